"""cluster.yaml passes the checks `ray up` runs before it starts anything (offline)."""

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_cluster_yaml_is_what_ray_up_accepts():
    config = prepare_config(yaml.safe_load(CLUSTER_YAML.read_text()))
    validate_config(config)
    gpu_workers = [
        node
        for node in config["available_node_types"].values()
        if node["resources"].get("GPU", 0) > 0
    ]
    assert gpu_workers and all(
        node["min_workers"] == 0 and node["max_workers"] > 0 for node in gpu_workers
    )
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # trials never land on the head that holds the store
    assert any("pip install -e ~/dae-study" in command for command in config["setup_commands"])
