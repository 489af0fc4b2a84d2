"""cluster.yaml passes Ray's own autoscaler schema (as ``ray up`` checks it)."""

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config


def test_cluster_yaml_is_a_valid_autoscaler_config():
    config = yaml.safe_load((Path(__file__).parents[1] / "cluster.yaml").read_text())
    prepared = prepare_config(config)
    validate_config(prepared)
    assert prepared["available_node_types"]["gpu_worker"]["min_workers"] == 0
    assert prepared["head_node_type"] in prepared["available_node_types"]
