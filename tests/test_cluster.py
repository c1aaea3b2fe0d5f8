"""cluster.yaml passes the checks `ray up` runs before it starts anything (offline), and its pinned
stack agrees with itself, with pyproject.toml and with the Ray these tests run with."""

import re
from functools import partial

import ray
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from project import PYPROJECT, REPO
from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import (
    _default_utilization_scorer,
    get_nodes_for,
)
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = yaml.safe_load((REPO / "cluster.yaml").read_text())
IMAGE = re.compile(r"rayproject/ray:(?P<ray>[\d.]+)-py(?P<python>\d)(?P<minor>\d+)-cu(?P<cuda>\d+)")


def requirement(name: str) -> Requirement:
    (found,) = [
        Requirement(text)
        for text in PYPROJECT["project"]["dependencies"]
        if Requirement(text).name == name
    ]
    return found


def install_command() -> str:
    (command,) = [line for line in CLUSTER["setup_commands"] if "pip install" in line]
    return command


def test_cluster_yaml_is_what_ray_up_accepts():
    config = prepare_config(CLUSTER)
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
    assert '-e "$HOME/dae-study[aws]"' in install_command()


def test_gpu_workers_are_spot_first_with_on_demand_beside_them():
    """The two GPU types offer the same resources: the autoscaler must pick the spot one, and that
    rests on how Ray breaks a tie (by the type's name), which a Ray upgrade could change."""
    types = CLUSTER["available_node_types"]
    market = {name: types[name]["node_config"].get("InstanceMarketOptions") for name in types}
    assert market["gpu_spot"] == {"MarketType": "spot"} and market["gpu_on_demand"] is None
    assert types["gpu_spot"]["resources"] == types["gpu_on_demand"]["resources"]
    scorer = partial(
        _default_utilization_scorer, node_availability_summary=NodeAvailabilitySummary({})
    )
    trials = [{"CPU": 1, "GPU": 1}] * 3
    added, unmet = get_nodes_for(types, {}, CLUSTER["head_node_type"], 8, trials, scorer)
    assert dict(added) == {"gpu_spot": 3} and unmet == []


def test_the_stack_is_pinned_and_agrees_with_itself_and_pyproject():
    """One Ray on every node (the image's, and the pip pin that keeps it), the launcher's own; a
    torch build for the image's CUDA; each within what pyproject.toml allows."""
    image = IMAGE.fullmatch(CLUSTER["docker"]["image"])
    assert image, CLUSTER["docker"]["image"]
    command = install_command()
    (ray_pin,) = re.findall(r"'ray\[[a-z,]+\]==([\d.]+)'", command)
    ((torch_pin, torch_cuda),) = re.findall(r"torch==([\d.]+)\+cu(\d+)", command)
    (index_cuda,) = re.findall(r"download\.pytorch\.org/whl/cu(\d+)", command)
    assert ray_pin == image["ray"] == ray.__version__
    assert torch_cuda == index_cuda == image["cuda"]
    assert requirement("ray").specifier.contains(ray_pin)
    assert requirement("torch").specifier.contains(torch_pin)
    python = f"{image['python']}.{image['minor']}"
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(python)


def test_every_node_boots_the_same_current_host_image():
    images = {node["node_config"]["ImageId"] for node in CLUSTER["available_node_types"].values()}
    (image,) = images
    assert "latest_dlami" not in image  # Ray resolves that to a CUDA 11 image from 2021
