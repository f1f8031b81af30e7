import json

import pytest

from discl.errors import BadInputError
from discl.prompts import PromptConfig, build_prompt, load_descriptions, resolve_descriptions


def test_template_prompt_names_the_class():
    cfg = PromptConfig(templates=["a photo of a {name}", "a {name} on a table"])
    prompts = {build_prompt(cfg, "Coat", f"s{i}", k) for i in range(20) for k in range(4)}
    assert prompts == {"a photo of a Coat", "a Coat on a table"}  # both templates get used


def test_choice_is_deterministic_per_sample_and_k(tmp_path):
    descs = {"Coat": [f"coat in scene {i}" for i in range(10)]}
    cfg = PromptConfig()
    a = [build_prompt(cfg, "Coat", "s1", k, descs) for k in range(8)]
    b = [build_prompt(cfg, "Coat", "s1", k, descs) for k in range(8)]
    assert a == b
    assert all(p.startswith("a 8k real photo: coat in scene ") for p in a)
    assert len(set(a)) > 1  # k changes the description
    # a class without descriptions falls back to the template
    assert build_prompt(cfg, "Bag", "s1", 0, descs) == "a photo of a Bag"


def test_load_descriptions_json_and_yaml(tmp_path):
    j = tmp_path / "d.json"
    j.write_text(json.dumps({"Coat": ["a warm coat on a hanger"], "Bag": "a leather bag"}))
    y = tmp_path / "d.yaml"
    y.write_text("Coat:\n  - a warm coat on a hanger\nBag:\n  - a leather bag\n")
    assert load_descriptions(j) == load_descriptions(y) == {"Coat": ["a warm coat on a hanger"], "Bag": ["a leather bag"]}
    cfg = PromptConfig(descriptions_file=str(y))
    assert resolve_descriptions(cfg, ["Coat", "Trouser"]) == {"Coat": ["a warm coat on a hanger"]}


@pytest.mark.parametrize("content", ["[1, 2]", '{"Coat": [""]}', '{"Coat": [3]}', "{not json"])
def test_bad_descriptions_file_names_the_file(tmp_path, content):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(BadInputError, match="bad.json"):
        load_descriptions(p)


def test_missing_descriptions_file():
    with pytest.raises(BadInputError, match="not found"):
        load_descriptions("/nonexistent/d.json")


def test_prompt_table_matches_the_spectrum_prompts(tmp_path):
    import pandas as pd

    from discl.config import RunConfig
    from discl.generation.config import GenerationConfig
    from discl.generation.planning import plan_jobs
    from discl.prompts.runner import write_prompts

    run = tmp_path / "run"
    (run / "mining").mkdir(parents=True)
    hard = pd.DataFrame({"sample_id": ["a", "b"], "label": [0, 1], "class_name": ["Coat", "Bag"]})
    hard.to_csv(run / "mining/hard.csv", index=False)
    cfg = RunConfig(run_dir=str(run), generation=GenerationConfig(seeds_per_level=3),
                    prompts=PromptConfig(templates=["a photo of a {name}", "a {name}"]))
    table = write_prompts(cfg, run, classes=["Coat", "Bag"])
    assert len(table) == 6 and (run / "prompts/prompts.csv").is_file()
    jobs = plan_jobs(hard, [0.0], 3, 0, 10, prompt_fn=lambda s, k, n: build_prompt(cfg.prompts, n, s, k))
    assert dict(zip(zip(table.sample_id, table.k), table.prompt)) == dict(zip(zip(jobs.sample_id, jobs.k), jobs.prompt))
