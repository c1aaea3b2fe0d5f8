"""cluster.yaml launched by Ray 2.60's own AWS code against moto's mock AWS, offline.

The roles and profiles are made by docs/cluster.md's own `aws iam` commands. Then what `ray up`
does before it first connects to a node (its bootstrap, then the head's create_node, with the
user's credentials), and what the head's autoscaler does (Ray's node launcher for each worker
type, listing, tagging and ending workers) with the head role's credentials, under moto's IAM
checks. What moto does not judge, iam:PassRole and the ssm:GetParameters that EC2 needs to resolve
`resolve:ssm:`, is read from the policy documents."""

import copy
import fnmatch
import json
import re
import subprocess
from contextlib import contextmanager

import boto3
import pytest
import yaml
from botocore import xform_name
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import enable_iam_authentication
from project import REPO
from ray.autoscaler._private.aws.node_provider import AWSNodeProvider
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.event_summarizer import EventSummarizer
from ray.autoscaler._private.node_launcher import BaseNodeLauncher
from ray.autoscaler._private.node_provider_availability_tracker import (
    NodeProviderAvailabilityTracker,
)
from ray.autoscaler._private.util import ConcurrentCounter
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

CLUSTER = yaml.safe_load((REPO / "cluster.yaml").read_text())
REGION = CLUSTER["provider"]["region"]
BUCKET = "dae-study-test-results"
WORKER_TYPES = sorted(set(CLUSTER["available_node_types"]) - {CLUSTER["head_node_type"]})
SSM_IMAGE = "resolve:ssm:"
# a developer's own AWS settings, which must not reach the mock
AWS_USER_SETTINGS = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def docs_aws_commands(bucket: str) -> list[list[str]]:
    """The argv of each `aws` command in docs/cluster.md's role block, as bash expands it there
    (from the repo root, BUCKET set to `bucket`): `aws` is a shell function that prints them."""
    docs = (REPO / "docs" / "cluster.md").read_text()
    (block,) = [b for b in re.findall(r"^```bash\n(.*?)^```", docs, re.M | re.S) if "aws iam" in b]
    block = re.sub(r"^BUCKET=.*$", f"BUCKET={bucket}", block, count=1, flags=re.M)
    printer = "aws() { printf '%s\\037' \"$@\"; printf '\\036'; }\n"
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", printer + block],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [record.split("\037")[:-1] for record in out.split("\036")[:-1]]


def aws_cli(argv: list[str]) -> dict:
    """`aws SERVICE OPERATION --option value ...` through boto3, mapped as the AWS CLI maps it
    (botocore's xform_name); a file:// value is the file's text, relative to the repo root."""
    service, command, *options = argv
    client = boto3.client(service, region_name=REGION)
    model = client.meta.service_model
    operation = {xform_name(name, "-"): name for name in model.operation_names}[command]
    members = model.operation_model(operation).input_shape.members
    names = {xform_name(member, "-"): member for member in members}
    params = {}
    for option, value in zip(options[::2], options[1::2], strict=True):
        if value.startswith("file://"):
            value = (REPO / value.removeprefix("file://")).read_text()
        params[names[option.removeprefix("--")]] = value
    return getattr(client, xform_name(operation))(**params)


def policy(role: str, name: str) -> dict:
    document = boto3.client("iam").get_role_policy(RoleName=role, PolicyName=name)
    return document["PolicyDocument"]


def policies_of(role: str) -> list[dict]:
    """Every policy document of the role: inline, and attached (their default versions)."""
    iam = boto3.client("iam")
    inline = iam.list_role_policies(RoleName=role)["PolicyNames"]
    attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    versions = [
        iam.get_policy_version(
            PolicyArn=p["PolicyArn"],
            VersionId=iam.get_policy(PolicyArn=p["PolicyArn"])["Policy"]["DefaultVersionId"],
        )["PolicyVersion"]["Document"]
        for p in attached
    ]
    return [policy(role, name) for name in inline] + versions


def role_in_profile(profile: str) -> dict:
    (role,) = boto3.client("iam").get_instance_profile(InstanceProfileName=profile)[
        "InstanceProfile"
    ]["Roles"]
    return role


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def allows(policies: list[dict], action: str, resource: str) -> bool:
    """Whether an Allow statement grants action (case-insensitive, as IAM's) on resource, with
    IAM's * and ? wildcards. The files hold only Allow statements with Action and Resource
    (checked here); a Condition only narrows an Allow, so it is left out."""
    statements = [statement for document in policies for statement in document["Statement"]]
    assert all(s["Effect"] == "Allow" and {"Action", "Resource"} <= set(s) for s in statements)
    return any(
        any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in listed(s["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in listed(s["Resource"]))
        for s in statements
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A mock AWS with the repo's roles (made by the docs' commands) and the bucket, in which a
    user with every right (moto's default) has run `ray up` (HOME is a scratch folder, for the key
    pair it writes). -> (the bootstrapped config, the head's instance id)"""
    with pytest.MonkeyPatch.context() as env:
        for variable in AWS_USER_SETTINGS:
            env.delenv(variable, raising=False)
        env.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        # AWS's managed policies, which Ray attaches to the role it makes for a head without one
        env.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        with mock_aws():
            for argv in docs_aws_commands(BUCKET):
                aws_cli(argv)
            location = {"LocationConstraint": REGION}
            boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration=location)
            yield ray_up(CLUSTER)


def credentials_of(role: str) -> dict:
    """The role's credentials, as an instance with its profile gets them."""
    arn = boto3.client("iam").get_role(RoleName=role)["Role"]["Arn"]
    sts = boto3.client("sts", region_name=REGION)
    found = sts.assume_role(RoleArn=arn, RoleSessionName="i-node")["Credentials"]
    return {
        "aws_access_key_id": found["AccessKeyId"],
        "aws_secret_access_key": found["SecretAccessKey"],
        "aws_session_token": found["SessionToken"],
    }


@contextmanager
def as_role(config: dict, role: str):
    """Ray's AWS node provider with the role's credentials, and the credentials, for a block in
    which moto's IAM checks every call."""
    credentials = credentials_of(role)
    provider_config = {**config["provider"], "aws_credentials": credentials}
    with enable_iam_authentication():
        yield AWSNodeProvider(provider_config, config["cluster_name"]), credentials


def ray_up(config: dict) -> tuple[dict, str]:
    """What `ray up` does before it first connects to a node: bootstrap (the key pair, subnets,
    security group, the head's profile), then launch the head with the user's credentials.
    -> (the bootstrapped config, the head's instance id)"""
    bootstrapped = _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
    head_config = bootstrapped["available_node_types"][bootstrapped["head_node_type"]]
    provider = AWSNodeProvider(bootstrapped["provider"], bootstrapped["cluster_name"])
    tags = {TAG_RAY_NODE_KIND: NODE_KIND_HEAD, TAG_RAY_USER_NODE_TYPE: config["head_node_type"]}
    node_config = {**bootstrapped["head_node"], **head_config["node_config"]}
    (head,) = provider.create_node(node_config, tags, 1)
    return bootstrapped, head


def launch(provider: AWSNodeProvider, config: dict, node_type: str) -> tuple[dict, str]:
    """One worker of node_type, as the head's autoscaler starts it (Ray's node launcher, which
    logs a failure and returns nothing). -> ({instance id: instance}, what failed)"""
    pending, tracker = ConcurrentCounter(), NodeProviderAvailabilityTracker()
    launcher = BaseNodeLauncher(
        provider, pending, EventSummarizer(), tracker, node_types=config["available_node_types"]
    )
    pending.inc(node_type, 1)
    created = launcher.launch_node(config, 1, node_type)
    return created, str(tracker.summary())


def launch_worker(provider: AWSNodeProvider, config: dict, node_type: str) -> str:
    created, failure = launch(provider, config, node_type)
    assert len(created) == 1, failure
    (node,) = created
    return node


def instance(node: str) -> dict:
    ec2 = boto3.client("ec2", region_name=REGION)
    (reservation,) = ec2.describe_instances(InstanceIds=[node])["Reservations"]
    (found,) = reservation["Instances"]
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [node]}])
    found["VolumeSizes"] = [volume["Size"] for volume in volumes["Volumes"]]
    return found


def test_ray_up_starts_the_head_with_its_own_profile_and_makes_no_role(cluster):
    bootstrapped, head = cluster
    assert bootstrapped["head_node"] == {}  # Ray filled in no default profile
    roles = {role["RoleName"] for role in boto3.client("iam").list_roles()["Roles"]}
    assert roles >= {"dae-study-head", "dae-study-worker"} and "ray-autoscaler-v1" not in roles
    node = instance(head)
    assert node["IamInstanceProfile"]["Arn"].endswith(":instance-profile/dae-study-head")
    assert node["InstanceType"] == "m5.2xlarge" and "InstanceLifecycle" not in node


@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")  # Ray's
def test_the_heads_role_starts_lists_tags_and_ends_every_worker_type(cluster):
    """What EC2 receives from the head: each type's instance type, image parameter, volume, the
    workers' profile, and the spot market for gpu_spot only."""
    bootstrapped, _ = cluster
    with as_role(bootstrapped, "dae-study-head") as (head, _):
        workers = {kind: launch_worker(head, bootstrapped, kind) for kind in WORKER_TYPES}
        listed = head.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_WORKER})
        head.set_node_tags(workers["gpu_spot"], {TAG_RAY_NODE_STATUS: "up-to-date"})
    assert sorted(listed) == sorted(workers.values())
    for kind, node in workers.items():
        expected = CLUSTER["available_node_types"][kind]["node_config"]
        found = instance(node)
        assert found["InstanceType"] == expected["InstanceType"] == "g5.2xlarge"
        assert found["ImageId"] == expected["ImageId"] and found["ImageId"].startswith(SSM_IMAGE)
        assert found["IamInstanceProfile"]["Arn"].endswith(":instance-profile/dae-study-worker")
        assert found["VolumeSizes"] == [200]
        assert found.get("InstanceLifecycle") == ("spot" if kind == "gpu_spot" else None)
    tags = {tag["Key"]: tag["Value"] for tag in instance(workers["gpu_spot"])["Tags"]}
    assert tags[TAG_RAY_NODE_STATUS] == "up-to-date"
    with as_role(bootstrapped, "dae-study-head") as (head, _):
        head.terminate_node(workers["gpu_on_demand"])  # an idle worker's end
    assert instance(workers["gpu_on_demand"])["State"]["Name"] in ("shutting-down", "terminated")


def test_a_worker_may_not_start_instances_and_reaches_only_its_bucket(cluster):
    bootstrapped, _ = cluster
    other = "someone-elses-bucket"
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=other, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    with as_role(bootstrapped, "dae-study-worker") as (worker, credentials):
        created, failure = launch(worker, bootstrapped, "gpu_spot")
        assert created == {} and "AccessDenied" in failure
        s3 = boto3.client("s3", region_name=REGION, **credentials)
        key = "dae-study/checkpoints/trial.pt"
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"state")
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"state"
        s3.delete_object(Bucket=BUCKET, Key=key)
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.put_object(Bucket=other, Key=key, Body=b"state")


def test_the_heads_role_may_pass_the_workers_role_only_and_read_the_image_parameter(cluster):
    """What moto does not judge, read from the policies of the role that `ray up` gave the head:
    EC2 checks iam:PassRole on the role inside the profile given to RunInstances, and resolves
    resolve:ssm: with the caller's ssm:GetParameters."""
    _, head = cluster
    head_role = role_in_profile(instance(head)["IamInstanceProfile"]["Arn"].split("/")[-1])
    worker_profiles = {
        CLUSTER["available_node_types"][kind]["node_config"]["IamInstanceProfile"]["Name"]
        for kind in WORKER_TYPES
    }
    (worker_role,) = {role_in_profile(name)["Arn"] for name in worker_profiles}
    rights = policies_of(head_role["RoleName"])
    assert allows(rights, "iam:PassRole", worker_role)
    assert not allows(rights, "iam:PassRole", head_role["Arn"])
    assert not allows(rights, "iam:PassRole", worker_role.rsplit("/", 1)[0] + "/admin")
    images = {node["node_config"]["ImageId"] for node in CLUSTER["available_node_types"].values()}
    (image,) = images
    parameter = f"arn:aws:ssm:{REGION}::parameter{image.removeprefix(SSM_IMAGE)}"
    assert allows(rights, "ssm:GetParameters", parameter)
    assert not allows(rights, "ssm:GetParameters", f"arn:aws:ssm:{REGION}:123:parameter/secret")


def test_the_bucket_policy_lets_pyarrow_tell_a_missing_checkpoint_from_a_refusal(cluster):
    """Without s3:ListBucket, S3 answers a missing key with 403, not 404, and pyarrow's
    get_file_info (trainables/checkpoints.py) raises instead of saying NotFound. moto judges
    listing by another action name (s3:ListObjectsV2), so the document is read."""
    bucket = [policy(role, "dae-study-bucket") for role in ("dae-study-worker", "dae-study-head")]
    assert bucket[0] == bucket[1] and "YOUR-BUCKET" not in json.dumps(bucket)
    assert allows(bucket, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}")
    assert not allows(bucket, "s3:ListBucket", "arn:aws:s3:::someone-elses-bucket")
    assert allows(bucket, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/dae-study/checkpoints/t.pt")
