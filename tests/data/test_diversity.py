"""Diversity metrics: known values, a diverse set ranks above a narrow one, ``onlyif diversity`` on datasets."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from onlyif.cli import main
from onlyif.data.embed import hashing_embed
from onlyif.errors import ConfigError
from onlyif.mixing.metrics import diversity_report, flat_metrics, mean_pairwise_distance, vendi_score

TOPICS = [
    "How do I merge two sorted lists in Python without extra memory?",
    "Explain the causes of the French revolution in three sentences.",
    "What is a good recipe for a vegan lentil curry with coconut milk?",
    "Prove that the square root of two is irrational.",
    "Write a haiku about autumn rain on a tin roof.",
    "Translate 'where is the train station' into German and Spanish.",
    "Which muscles does a deadlift train, and how to avoid back injury?",
    "Summarize the plot of Moby Dick for a ten year old.",
    "How does TCP congestion control react to packet loss?",
    "Suggest names for a bakery that specializes in sourdough.",
    "What is the derivative of x squared times sine of x?",
    "Describe the water cycle using a short analogy.",
]
NARROW = [f"How do I merge two sorted lists in Python, version {i}?" for i in range(12)]


def test_known_values():
    eye = np.eye(5, dtype=np.float32)
    assert vendi_score(eye) == pytest.approx(5.0) and vendi_score(np.ones((5, 3))) == pytest.approx(1.0)
    assert mean_pairwise_distance(eye) == pytest.approx(1.0) and mean_pairwise_distance(
        np.ones((4, 2))
    ) == pytest.approx(0.0)


def test_diverse_set_ranks_above_narrow_set():
    texts = TOPICS + NARROW
    groups = ["diverse"] * len(TOPICS) + ["narrow"] * len(NARROW)
    emb = hashing_embed(texts, 512)
    report = diversity_report(texts, groups, emb, np.arange(len(texts)), clusters=6, seed=0)
    wide, narrow = report["domains"]["diverse"], report["domains"]["narrow"]
    for metric in ("distinct_1", "distinct_2", "distinct_3", "mean_pairwise_distance", "vendi", "cluster_entropy"):
        assert wide[metric] > narrow[metric], metric
    assert wide["cluster_coverage"] >= narrow["cluster_coverage"]
    assert report["unit"] == "words" and report["overall"]["rows"] == 24
    flat = flat_metrics(report)
    assert flat["diversity.narrow.vendi"] == narrow["vendi"] and len(flat) == 3 * len(wide)


def test_diversity_cli_on_mixture_and_synthetic_dirs(ray_cluster, tmp_path, capsys):
    mix = tmp_path / "mix"
    (mix / "train").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "prompt": TOPICS + NARROW,
                "response": ["ok"] * 24,
                "domain": ["general"] * 12 + ["code"] * 12,
            }
        ),
        mix / "train" / "part-00000.parquet",
    )
    assert main(["diversity", str(mix), "--embed-model", "hashing", "--sample", "20", "--clusters", "4"]) == 0
    report = json.loads((mix / "diversity" / "diversity.json").read_text())
    assert report["sample"] == 20 and set(report["domains"]) == {"general", "code"}
    assert report["domains"]["general"]["vendi"] > report["domains"]["code"]["vendi"]
    assert (mix / "diversity" / "diversity.png").read_bytes()[:4] == b"\x89PNG"
    assert "general" in capsys.readouterr().out

    from onlyif.config import validate_config
    from onlyif.data.generate import generate_dataset
    from onlyif.tasks.config import TaskConfig

    task = {
        "alphabet_size": 6,
        "input_length": 12,
        "pattern_length": 3,
        "instructions": 40,
        "budget": 400,
        "test_seen": 10,
        "test_unseen": 10,
        "families": [{"name": "random", "share": 0.5}, {"name": "repeated", "share": 0.5, "k": [1, 2]}],
    }
    syn = tmp_path / "syn"
    generate_dataset(validate_config(TaskConfig, task), syn, num_blocks=1, progress=False)
    out = tmp_path / "syn_div"
    args = [
        "diversity",
        str(syn),
        "--embed-model",
        "hashing",
        "--out",
        str(out),
        "--clusters",
        "4",
        "--max-rows",
        "300",
    ]
    assert main(args) == 0
    report = json.loads((out / "diversity.json").read_text())
    assert report["unit"] == "chars" and set(report["domains"]) == {"random", "repeated"}
    assert sum(d["rows"] for d in report["domains"].values()) == report["overall"]["rows"] == 300
    assert report["rows_total"] == 400
    assert main(["diversity", str(syn), "--split", "test_unseen", "--embed-model", "hashing", "--out", str(out)]) == 0
    assert json.loads((out / "diversity.json").read_text())["overall"]["rows"] == 10

    assert main(["diversity", str(syn), "--text-column", "nope", "--embed-model", "hashing"]) == 1
    assert "--text-column 'nope': not a column" in capsys.readouterr().err


def test_minilm_embeddings_on_an_actor_pool(ray_cluster):
    from onlyif.data.embed import embed_texts
    from onlyif.data.mixture_config import EmbedConfig

    texts = [
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar in a concert.",
        "The stock market fell sharply after the announcement.",
    ]
    emb = embed_texts(texts, EmbedConfig(model="minilm", actors=1, batch_size=2), num_blocks=2)
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3
    if not ray_cluster.cluster_resources().get("GPU"):
        with pytest.raises(ConfigError, match="embed.device: cuda, but the Ray cluster has no GPU"):
            embed_texts(texts, EmbedConfig(model="minilm", device="cuda"))
