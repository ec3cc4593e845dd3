"""Who writes the queries and how: anchored prompts, the expert's adapter scaled while writing,
and `query_prompt: auto`."""

from __future__ import annotations

import math
import random

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.common import SEEDS
from tests.test_pipeline import make_run
from titok.core.config import SynthConfig
from titok.core.data import Example
from titok.core.errors import GenerationError
from titok.models.prompts import prompt_format
from titok.stages import synth
from titok.stages.synth import (
    QUERY_STYLES,
    QUERY_TOKENS_FLOOR,
    Writer,
    choose_query_prompt,
    generate_queries,
    query_prompt_ids,
    query_token_limit,
)

EXAMPLES = [Example(row["query"], row["answer"]) for row in SEEDS]
SMALL = {"max_query_tokens": 8, "batch_size": 4, "query_prompt": "continue"}


@pytest.fixture(scope="module")
def expert(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["source"])
    base = AutoModelForCausalLM.from_pretrained(tiny_models["source"]).eval()
    model = PeftModel.from_pretrained(base, tiny_models["adapter"]).eval()
    return Writer(model, tokenizer, prompt_format(tokenizer))


def queries(writer: Writer, **settings) -> list[str]:
    config = SynthConfig(**{**SMALL, **settings})
    written, _ = generate_queries(
        writer.model, writer.tokenizer, writer.fmt, EXAMPLES, config, 6, seed=3
    )
    return written


def test_anchored_requests_end_with_the_opening_of_a_seed(expert):
    config = SynthConfig(query_prompt="anchored", anchor_share=0.5)
    ids, anchor = query_prompt_ids(expert.tokenizer, expert.fmt, config, EXAMPLES, random.Random(0))
    assert any(e.query.startswith(anchor) for e in EXAMPLES) and len(anchor.split()) >= 1
    assert expert.tokenizer.decode(ids).rstrip().endswith(anchor)
    written = queries(expert, query_prompt="anchored", anchor_share=0.5, diversity_filter="dedup")
    openings = {" ".join(e.query.split()[: max(1, len(e.query.split()) // 2)]) for e in EXAMPLES}
    assert all(any(q.startswith(o) for o in openings) for q in written)


@pytest.mark.parametrize("shown", [True, False])
def test_an_anchored_request_shows_its_opening_seed_only_when_asked(expert, shown):
    config = SynthConfig(query_prompt="anchored", anchor_share=0.5, anchor_seed_shown=shown)
    rng = random.Random(0)
    for _ in range(20):
        ids, anchor = query_prompt_ids(expert.tokenizer, expert.fmt, config, EXAMPLES, rng)
        text = expert.tokenizer.decode(ids)
        listing, _, _ = text.rpartition("Example ")  # the examples, before the anchored one
        (opening,) = [e.query for e in EXAMPLES if e.query.startswith(anchor)]
        assert text.rstrip().endswith(anchor)
        assert (opening in listing) is shown
        assert listing.count("Example ") == (5 if shown else 4)


def test_at_writer_scale_0_the_source_base_writes(expert, tiny_models):
    base = AutoModelForCausalLM.from_pretrained(tiny_models["source"]).eval()
    plain = Writer(base, expert.tokenizer, expert.fmt)
    by_base = queries(plain)
    assert queries(expert, writer_scale=0.0) == by_base
    assert queries(expert) != by_base  # the adapter (random, large) changes what is written
    # the adapter is back at full scale afterwards
    assert queries(expert) == queries(expert)


def test_auto_probes_every_style_and_the_manifest_says_which_it_chose(
    expert, tiny_models, tmp_path
):
    config = SynthConfig(**{**SMALL, "query_prompt": "auto"})
    style, scores = choose_query_prompt(expert, EXAMPLES, config, seed=0)
    assert set(scores) == {"chat", "continue", "anchored"} and style in scores
    assert scores[style]["score"] == max(s["score"] for s in scores.values())
    run = make_run(tiny_models, tmp_path / "run", synth__query_prompt="auto")
    run.run_stage(run.stage("synth"))
    figures = run.run_dir.manifest("synth")["figures"]
    assert figures["query_prompt"] in scores and set(figures["query_prompt_probe"]) == set(scores)


def test_tuneshift_writes_its_rounds_as_titok_writes_its_pool(tiny_models, tmp_path):
    """TuneShift-KD's rounds use the same query writing: `auto` chosen once, and the validity
    rules measured against the seeds (a baseline through the same stages)."""
    settings = {"method": "tuneshift-kd", "synth__query_prompt": "auto", "synth__max_rounds": 1}
    run = make_run(tiny_models, tmp_path / "run", **settings)
    run.run_stage(run.stage("synth"))
    figures = run.run_dir.manifest("synth")["figures"]
    assert figures["query_prompt"] in ("chat", "continue", "anchored")
    assert set(figures["query_prompt_probe"]) == {"chat", "continue", "anchored"}
    assert run.run_dir.path("synthetic.jsonl").read_text().strip()
    # with the rules on, the random tiny expert's queries all break one: the error names them
    checked = make_run(tiny_models, tmp_path / "checked", **settings, synth__validity=True)
    with pytest.raises(GenerationError, match=r"no valid sample .*dropped by rule: .*ending"):
        checked.run_stage(checked.stage("synth"))


def test_the_query_length_limit_makes_room_for_the_longest_seed(expert):
    tokenizer = expert.tokenizer
    assert query_token_limit(tokenizer, EXAMPLES, SynthConfig()) == QUERY_TOKENS_FLOOR
    long_seed = Example("This SVG path element " + "L 41.85,34.71 " * 40 + "draws a", "(E)")
    length = len(tokenizer(long_seed.query)["input_ids"])
    assert length > QUERY_TOKENS_FLOOR
    limit = query_token_limit(tokenizer, [*EXAMPLES, long_seed], SynthConfig())
    assert limit == math.ceil(1.5 * length)
    # a set limit is kept as set
    assert query_token_limit(tokenizer, [long_seed], SynthConfig(max_query_tokens=8)) == 8
    _, figures = generate_queries(
        expert.model, tokenizer, expert.fmt, EXAMPLES, SynthConfig(**SMALL), 2, seed=3
    )
    assert figures["max_query_tokens"] == 8


def test_the_sampler_setting_reaches_query_writing(expert):
    assert queries(expert, sampler="candidates") == queries(expert, sampler="candidates")
    assert queries(expert, sampler="candidates") != queries(expert)


def fake_probe(scores_by_scale: dict[float, float], calls: list[float]):
    """`choose_query_prompt` as if the writer at each adapter scale scored so in every style."""

    def choose(writer, seeds, config, seed):
        calls.append(config.writer_scale)
        score = scores_by_scale[config.writer_scale]
        figures = {"valid_share": score, "seed_similarity": 1.0, "score": score}
        return "continue", {style: dict(figures) for style in QUERY_STYLES}

    return choose


def test_the_source_base_writes_when_the_expert_writes_nothing_usable(expert, monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(synth, "choose_query_prompt", fake_probe({1.0: 0.0, 0.0: 0.5}, calls))
    config = SynthConfig(**{**SMALL, "query_prompt": "auto", "validity": False})
    result = synth.synthesize(expert, EXAMPLES, config, 4, seed=0)
    assert calls == [1.0, 0.0]
    assert result.figures["writer_scale"] == 0.0 and "writer_fallback" in result.figures
    assert result.figures["expert_query_prompt_probe"]["continue"]["score"] == 0.0
    # what the source base writes: the same draws as writer_scale 0 given outright
    base = config.model_copy(update={"writer_scale": 0.0, "query_prompt": "continue"})
    written, _ = generate_queries(expert.model, expert.tokenizer, expert.fmt, EXAMPLES, base, 4, 0)
    assert [s.query for s in result.samples] == written[: len(result.samples)]


@pytest.mark.parametrize(
    ("scores", "settings", "expected_calls"),
    [
        ({1.0: 0.2, 0.0: 0.5}, {}, [1.0]),  # the expert writes something: it keeps writing
        ({1.0: 0.0, 0.0: 0.0}, {}, [1.0, 0.0]),  # the base writes nothing usable either
        ({0.5: 0.0}, {"writer_scale": 0.5, "query_prompt": "continue"}, []),  # a chosen style
    ],
)
def test_no_fall_back_unless_auto_finds_nothing_and_the_base_does(
    expert, monkeypatch, scores, settings, expected_calls
):
    calls: list[float] = []
    monkeypatch.setattr(synth, "choose_query_prompt", fake_probe(scores, calls))
    config = SynthConfig(**{**SMALL, "query_prompt": "auto", "validity": False, **settings})
    result = synth.synthesize(expert, EXAMPLES, config, 4, seed=0)
    assert calls == expected_calls and "writer_fallback" not in result.figures


def test_tuneshift_falls_back_to_the_source_base_as_titok_does(tiny_models, tmp_path, monkeypatch):
    """An expert that writes no usable query in any style (the bench's rule:0 expert) does not
    stop TuneShift-KD's rounds: the source base writes them, as it does TiTok's pool."""
    calls: list[float] = []
    monkeypatch.setattr(synth, "choose_query_prompt", fake_probe({1.0: 0.0, 0.0: 0.5}, calls))
    settings = {"method": "tuneshift-kd", "synth__query_prompt": "auto", "synth__max_rounds": 1}
    run = make_run(tiny_models, tmp_path / "run", **settings)
    run.run_stage(run.stage("synth"))
    figures = run.run_dir.manifest("synth")["figures"]
    assert calls == [1.0, 0.0]
    assert figures["writer_scale"] == 0.0 and "writer_fallback" in figures
    assert run.run_dir.path("synthetic.jsonl").read_text().strip()
