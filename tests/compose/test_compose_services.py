"""Our services in the compose stack run real ``cryptopipe`` commands with real settings.

Each command line is parsed by the very parser its subcommand uses (dispatch through
``cryptopipe.cli.main.COMMANDS``, then the subcommand's ``parse_args``, stopped right after
parsing), and each service's environment is loaded into the project's settings classes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from cryptopipe.alerting.job import NATIVE_KAFKA_PACKAGE
from cryptopipe.cli.main import COMMANDS
from cryptopipe.cli.main import build_parser as cli_parser
from cryptopipe.observability.prometheus import DEFAULT_METRICS_PORTS

#: Variables a service may set that belong to other software, not to our settings classes.
THIRD_PARTY_ENV = frozenset(
    {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "JAVA_HOME", "JAVA_TOOL_OPTIONS", "TZ"}
)
THIRD_PARTY_PREFIXES = ("SPARK_", "PYSPARK_")

#: Who talks to which server.
NEEDS_KAFKA = {"ingest", "prices-consumer", "books-consumer", "alerts-consumer", "alerting"}
NEEDS_REDIS = {"prices-consumer", "books-consumer", "alerts-consumer", "dashboard"}
#: The published-port secrets tests interpolate with (any non-empty values do).
SECRETS = {"REDIS_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y"}
CLUSTER_NODES = {"broker", "broker-2", "broker-3"}


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__("parsed")
        self.namespace = namespace


def parse_command(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, argparse.Namespace]:
    """``["cryptopipe", SUB, ...]`` -> (SUB, the subcommand's parsed arguments); nothing runs."""
    assert argv[0] == "cryptopipe", f"{argv}: not a cryptopipe command"
    top, rest = cli_parser().parse_known_args(argv[1:])
    module, _, function = COMMANDS[top.command].target.partition(":")
    handler: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        raise _Parsed(original(self, args, namespace))

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
        try:
            handler(rest)
        except _Parsed as parsed:
            return str(top.command), parsed.namespace
        except SystemExit as exc:
            pytest.fail(f"`{' '.join(argv)}` is rejected by its parser (exit {exc.code}; see stderr)")
    pytest.fail(f"`{' '.join(argv)}` ran without parsing its arguments with parse_args")


def _command(spec: dict[str, Any]) -> list[str]:
    command = spec.get("command")
    assert isinstance(command, list), "use the exec form (a list) for command"
    return [str(part) for part in command]


def _listeners(env: dict[str, str], variable: str) -> dict[str, str]:
    """``KAFKA_LISTENERS``-style ``NAME://host:port,...`` -> ``{NAME: "host:port"}``."""
    return dict(item.split("://", 1) for item in env[variable].split(","))


def kafka_brokers(stack: Any) -> dict[str, str]:
    """Every Kafka node of the stack -> the PLAINTEXT address it advertises inside the network."""
    return {
        name: _listeners(stack.environment(name), "KAFKA_ADVERTISED_LISTENERS")["PLAINTEXT"]
        for name, spec in stack.services.items()
        if str(spec.get("image", "")).startswith("apache/kafka:")
    }


def kafka_clients(stack: Any) -> dict[str, list[str]]:
    """Every service given Kafka bootstrap servers (``KAFKA_BOOTSTRAP_SERVERS``, or kafka-exporter's
    ``--kafka.server`` flags) -> those servers."""
    clients = {}
    for name, spec in stack.services.items():
        env = stack.environment(name)
        if "KAFKA_BOOTSTRAP_SERVERS" in env:
            clients[name] = env["KAFKA_BOOTSTRAP_SERVERS"].split(",")
        flags = [str(part) for part in spec.get("command") or [] if str(part).startswith("--kafka.server=")]
        if flags:
            clients[name] = [flag.removeprefix("--kafka.server=") for flag in flags]
    return clients


def test_our_services_are_the_metrics_components(base_stack: Any) -> None:
    """Service names equal the component names Prometheus' config and cAdvisor's labels use."""
    components = set(DEFAULT_METRICS_PORTS) - {"orchestrator"}
    assert components <= set(base_stack.ours())
    assert {"broker", "redis", "prometheus", "grafana", "cadvisor", "kafka-exporter"} <= set(
        base_stack.services
    )


def test_every_command_is_a_real_subcommand_with_real_flags(
    compose_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = set()
    for name, spec in compose_stack.ours().items():
        subcommand, _args = parse_command(_command(spec), monkeypatch)
        assert subcommand in COMMANDS
        seen.add(subcommand)
        if name != "replay-exchange":
            assert subcommand == name, f"service {name} runs `cryptopipe {subcommand}`"
    assert {"ingest", "prices-consumer", "alerts-consumer", "alerting", "skew-monitor", "dashboard"} <= seen
    if "replay" in compose_stack.name.split("+"):
        assert "replay-exchange" in seen


def test_services_bind_all_interfaces_inside_on_their_documented_ports(
    compose_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, spec in compose_stack.ours().items():
        _sub, args = parse_command(_command(spec), monkeypatch)
        exposed = {str(port) for port in spec.get("expose", [])}
        if name in DEFAULT_METRICS_PORTS and hasattr(args, "metrics_port"):
            assert args.metrics_host == "0.0.0.0", name
            assert args.metrics_port == DEFAULT_METRICS_PORTS[name], name
            assert str(args.metrics_port) in exposed, f"{name} does not expose its metrics port"
            port = args.metrics_port
        else:  # dashboard, replay exchange: an HTTP server with --host/--port
            assert args.host == "0.0.0.0", name
            port = args.port
        health = " ".join(spec["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/" in health, f"{name}'s healthcheck does not probe port {port}"


def test_environment_variables_are_known_settings(compose_stack: Any, known_settings: dict[str, Any]) -> None:
    unknown = {
        f"{name}: {variable}"
        for name in compose_stack.ours()
        for variable in compose_stack.environment(name)
        if variable not in known_settings
        and variable not in THIRD_PARTY_ENV
        and not variable.startswith(THIRD_PARTY_PREFIXES)
    }
    assert not unknown, f"not a setting of any settings class nor an allowed third-party variable: {unknown}"


def test_environments_load_into_the_settings_classes(
    compose_stack: Any, known_settings: dict[str, list[type[BaseSettings]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each service's environment is valid for every settings class that reads part of it."""
    for name in compose_stack.ours():
        env = compose_stack.environment(name)
        classes = {cls for variable in env for cls in known_settings.get(variable, [])}
        with monkeypatch.context() as patch:
            for variable in known_settings:
                patch.delenv(variable, raising=False)
            for variable, value in env.items():
                patch.setenv(variable, value)
            for cls in classes:
                try:
                    cls(_env_file=None)
                except ValidationError as exc:
                    pytest.fail(f"{name}: {cls.__name__} rejects the compose environment: {exc}")


def test_services_reach_the_broker_and_redis(compose_stack: Any) -> None:
    """Every Kafka client is given every broker (one, or the cluster's three) and waits for each."""
    services = compose_stack.services
    brokers = kafka_brokers(compose_stack)
    assert brokers, "no Kafka broker in the stack"
    clients = kafka_clients(compose_stack)
    assert NEEDS_KAFKA | {"kafka-exporter"} <= set(clients)
    for name, bootstrap in clients.items():
        assert sorted(bootstrap) == sorted(brokers.values()), f"{name}: {bootstrap}, brokers {brokers}"
        for broker in brokers:
            assert services[name]["depends_on"][broker]["condition"] == "service_healthy", (name, broker)
    redis_command = [str(part) for part in services["redis"]["command"]]
    password = redis_command[redis_command.index("--requirepass") + 1]
    for name in compose_stack.ours():
        env = compose_stack.environment(name)
        if name in NEEDS_REDIS:
            url = urlsplit(env["REDIS_URL"])
            assert (url.hostname, url.port, url.password) == ("redis", 6379, password), name
            assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_secrets_come_from_the_env_file_and_are_required(stack_factory: Any) -> None:
    from_env = stack_factory("base", {"REDIS_PASSWORD": "r3dis", "GRAFANA_ADMIN_PASSWORD": "gr4fana"})
    assert urlsplit(from_env.environment("prices-consumer")["REDIS_URL"]).password == "r3dis"
    assert from_env.environment("grafana")["GF_SECURITY_ADMIN_PASSWORD"] == "gr4fana"
    for missing in ("REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        env = {"REDIS_PASSWORD": "r3dis", "GRAFANA_ADMIN_PASSWORD": "gr4fana", missing: ""}
        with pytest.raises(ValueError, match=f"{missing}: set {missing} in compose/.env"):
            stack_factory("base", env)


@pytest.mark.parametrize("name", ["replay", "replay+cluster"])
def test_published_ports_bind_loopback_unless_told_otherwise(name: str, stack_factory: Any) -> None:
    for env, address in (
        (SECRETS, "127.0.0.1"),
        ({**SECRETS, "CRYPTOPIPE_PUBLISH_ADDRESS": "0.0.0.0"}, "0.0.0.0"),
    ):
        published = {
            service: [str(port) for port in spec.get("ports", [])]
            for service, spec in stack_factory(name, env).services.items()
        }
        bindings = [port.split(":") for ports in published.values() for port in ports]
        assert bindings, "nothing is published"
        assert all(len(parts) == 3 and parts[0] == address for parts in bindings), published
        host_ports = [parts[1] for parts in bindings]
        assert len(host_ports) == len(set(host_ports)), f"two services publish one host port: {published}"
        assert {"dashboard", "grafana", "prometheus"} <= {s for s, ports in published.items() if ports}


def test_images_are_pinned(compose_stack: Any) -> None:
    pinned = re.compile(r"^[a-z0-9./-]+:v?\d+\.\d+\.\d+$")
    for name, spec in compose_stack.services.items():
        image = str(spec["image"])
        if "build" in spec:
            assert re.fullmatch(r"cryptopipe-[a-z]+:local", image), f"{name}: built image {image}"
        else:
            assert pinned.match(image), f"{name}: {image} is not pinned to an exact version"
        assert not image.endswith(":latest")


def test_restart_policies_healthchecks_and_dependency_conditions(compose_stack: Any) -> None:
    services = compose_stack.services
    # cAdvisor's image defines its own HEALTHCHECK.
    without_healthcheck = {"cadvisor"}
    for name, spec in services.items():
        assert spec.get("restart") == "unless-stopped", name
        if name not in without_healthcheck:
            assert spec.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in (spec.get("depends_on") or {}).items():
            assert isinstance(condition, dict), f"{name}: depends_on {dependency} without a condition"
            assert condition["condition"] in {"service_healthy", "service_completed_successfully"}, name
            assert "healthcheck" in services[dependency], (
                f"{name} waits for {dependency}, which has no healthcheck"
            )


def test_state_lives_in_named_volumes(base_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    services = base_stack.services

    def named(service: str) -> dict[str, str]:
        mounts = {}
        for volume in services[service].get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if not source.startswith((".", "/")):
                assert source in base_stack.volumes, f"{service}: volume {source} is not declared"
                mounts[target] = source
        return mounts

    assert base_stack.environment("broker")["KAFKA_LOG_DIRS"] in named("broker")
    assert "/data" in named("redis")
    assert "/prometheus" in named("prometheus")
    assert "/var/lib/grafana" in named("grafana")
    _sub, args = parse_command(_command(services["alerting"]), monkeypatch)
    assert str(args.checkpoint_dir) in named("alerting")
    redis_command = [str(part) for part in services["redis"]["command"]]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"


def test_spark_uses_the_native_kafka_source_unless_offline(stack_factory: Any) -> None:
    from cryptopipe.alerting.settings import AlertingSettings
    from cryptopipe.runtime.jvm import SPARK_KAFKA_COMPATIBLE

    # pyspark's own version, or the compatible connector `up` falls back to while Maven Central
    # has none of pyspark's version (4.3.0 today: compose pins what exists).
    pyspark = importlib.metadata.version("pyspark")
    connector = NATIVE_KAFKA_PACKAGE.format(version=SPARK_KAFKA_COMPATIBLE.get(pyspark, (pyspark,))[0])
    online = stack_factory("base", {"REDIS_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y"})
    conf = AlertingSettings.model_validate(
        {"ALERTING_SPARK_CONF": online.environment("alerting")["ALERTING_SPARK_CONF"]}
    ).spark_conf
    assert conf["spark.jars.packages"] == connector
    ivy = conf["spark.jars.ivy"]
    assert any(str(v).endswith(f":{ivy}") for v in online.services["alerting"]["volumes"])
    offline = stack_factory(
        "base", {"REDIS_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y", "ALERTING_SPARK_CONF": ""}
    )
    assert offline.environment("alerting")["ALERTING_SPARK_CONF"] == ""


def test_replay_override_points_the_exchange_side_at_the_replay_exchange(
    replay_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = replay_stack.services
    _sub, exchange = parse_command(_command(services["replay-exchange"]), monkeypatch)
    ingest = replay_stack.environment("ingest")
    assert ingest["BINANCE_WS_URL"] == f"ws://replay-exchange:{exchange.port}"
    assert ingest["BINANCE_REST_URL"] == f"http://replay-exchange:{exchange.port}"
    assert replay_stack.environment("skew-monitor")["BINANCE_REST_URL"] == ingest["BINANCE_REST_URL"]
    served = {symbol.lower() for symbol in exchange.symbols}
    assert set(ingest["INGEST_SYMBOLS"].split(",")) <= served
    for name in ("ingest", "skew-monitor"):
        assert services[name]["depends_on"]["replay-exchange"]["condition"] == "service_healthy"
    # The override adds to the base file; it does not drop what the base declared.
    assert services["ingest"]["depends_on"]["broker"]["condition"] == "service_healthy"
    assert services["ingest"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "broker:9092"


@pytest.mark.parametrize("name", ["base", "cluster"])
def test_dashboard_names_what_runs(name: str, stack_factory: Any) -> None:
    import json

    stack = stack_factory(name, SECRETS)
    info = json.loads(stack.environment("dashboard")["CRYPTOPIPE_RUNTIME_INFO"])
    kafka_tag = stack.services["broker"]["image"].rsplit(":", 1)[1]
    redis_tag = stack.services["redis"]["image"].rsplit(":", 1)[1]
    assert kafka_tag in info["broker"]
    assert redis_tag in info["redis"]
    assert "local[2]" in info["spark"]
    assert ("3 brokers" in info["broker"]) == (len(kafka_brokers(stack)) == 3)


# --- the 3-broker cluster override (compose/docker-compose.cluster.yml) ---------------------------


def test_cluster_override_runs_three_kraft_nodes_replicating_three_ways(
    base_stack: Any, cluster_stack: Any
) -> None:
    brokers = kafka_brokers(cluster_stack)
    assert set(brokers) == CLUSTER_NODES
    envs = {name: cluster_stack.environment(name) for name in brokers}
    node_ids = {name: int(env["KAFKA_NODE_ID"]) for name, env in envs.items()}
    assert sorted(node_ids.values()) == [1, 2, 3]
    base_env = base_stack.environment("broker")
    for name, env in envs.items():
        assert set(base_env) <= set(env), f"{name} lacks settings the single broker has"
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        listeners = _listeners(env, "KAFKA_LISTENERS")
        controller_port = listeners["CONTROLLER"].rsplit(":", 1)[1]
        voters = set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert voters == {f"{node_ids[node]}@{node}:{controller_port}" for node in brokers}, name
        assert brokers[name] == f"{name}:{listeners['PLAINTEXT'].rsplit(':', 1)[1]}"
        # Our topics (created with the broker's default replication) and the internal ones: 3 copies,
        # and acks=all writes need 2 of them, so one broker may be down.
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == base_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]
    [cluster_id] = {env["CLUSTER_ID"] for env in envs.values()}
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
    assert cluster_id != base_env["CLUSTER_ID"], "the cluster must not reuse the single broker's data"
    # Ingest leaves the replication to the brokers' default (3) unless told otherwise.
    assert "INGEST_TOPIC_REPLICATION_FACTOR" not in cluster_stack.environment("ingest")


def test_cluster_nodes_are_reachable_from_the_host_each_on_its_own_loopback_port(cluster_stack: Any) -> None:
    host_ports = set()
    for name in CLUSTER_NODES:
        env = cluster_stack.environment(name)
        host, port = _listeners(env, "KAFKA_ADVERTISED_LISTENERS")["HOST"].rsplit(":", 1)
        assert host == "127.0.0.1", name
        assert _listeners(env, "KAFKA_LISTENERS")["HOST"] == f":{port}", name
        assert f"127.0.0.1:{port}:{port}" in [str(p) for p in cluster_stack.services[name]["ports"]], name
        host_ports.add(port)
    assert host_ports == {"9094", "9095", "9096"}


def test_every_kafka_client_of_the_base_gets_the_cluster_bootstrap(
    base_stack: Any, stack_factory: Any
) -> None:
    base_clients = {
        name
        for name, spec in base_stack.services.items()
        if name in kafka_clients(base_stack) or "broker" in (spec.get("depends_on") or {})
    }
    assert NEEDS_KAFKA | {"kafka-exporter"} <= base_clients
    expected = sorted(["broker:9092", "broker-2:9092", "broker-3:9092"])
    for name, without_cluster in (("cluster", "base"), ("replay+cluster", "replay")):
        stack = stack_factory(name, SECRETS)
        clients = kafka_clients(stack)
        for service in base_clients:
            assert sorted(clients.get(service, [])) == expected, f"{name}: {service}"
            for node in CLUSTER_NODES:
                assert stack.services[service]["depends_on"][node]["condition"] == "service_healthy"
        # Only Kafka changes: the override adds brokers 2 and 3 and no other service.
        assert set(stack.services) == set(stack_factory(without_cluster, SECRETS).services) | CLUSTER_NODES


def test_cluster_nodes_share_the_base_image_and_healthcheck_and_start_together(
    base_stack: Any, cluster_stack: Any
) -> None:
    base = base_stack.services["broker"]
    for name in CLUSTER_NODES:
        spec = cluster_stack.services[name]
        assert spec["image"] == base["image"], name
        assert spec["restart"] == "unless-stopped", name
        assert spec["healthcheck"]["test"] == base["healthcheck"]["test"], name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert spec["healthcheck"][key] == base["healthcheck"][key], (name, key)
        # A node needs the others for a quorum: waiting for one of them would never end.
        assert not set(spec.get("depends_on") or {}) & CLUSTER_NODES, name


def test_cluster_nodes_keep_their_data_in_volumes_of_their_own(cluster_stack: Any) -> None:
    sources = {}
    for name in CLUSTER_NODES:
        log_dirs = cluster_stack.environment(name)["KAFKA_LOG_DIRS"]
        mounts = [str(v) for v in cluster_stack.services[name]["volumes"] if str(v).split(":")[1] == log_dirs]
        [mount] = mounts  # Compose merges volumes by target: the override's replaces the base's
        source = mount.split(":")[0]
        assert source in cluster_stack.volumes, f"{name}: volume {source} is not declared"
        sources[name] = source
    assert len(set(sources.values())) == 3, sources
    assert "kafka-data" not in sources.values(), "the single broker's volume stays the single broker's"
