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
NEEDS_KAFKA = {"ingest", "prices-consumer", "alerts-consumer", "alerting"}
NEEDS_REDIS = {"prices-consumer", "alerts-consumer", "dashboard"}


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
    if compose_stack.name == "replay":
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
    services = compose_stack.services
    broker_env = compose_stack.environment("broker")
    advertised = broker_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    redis_command = [str(part) for part in services["redis"]["command"]]
    password = redis_command[redis_command.index("--requirepass") + 1]
    for name in compose_stack.ours():
        env = compose_stack.environment(name)
        if name in NEEDS_KAFKA:
            bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
            assert f"PLAINTEXT://{bootstrap}" in advertised, f"{name}: {bootstrap} is not a broker listener"
            assert services[name]["depends_on"]["broker"]["condition"] == "service_healthy"
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


def test_published_ports_bind_loopback_unless_told_otherwise(stack_factory: Any) -> None:
    secrets = {"REDIS_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y"}
    for env, address in (
        (secrets, "127.0.0.1"),
        ({**secrets, "CRYPTOPIPE_PUBLISH_ADDRESS": "0.0.0.0"}, "0.0.0.0"),
    ):
        published = {
            name: [str(port) for port in spec.get("ports", [])]
            for name, spec in stack_factory("replay", env).services.items()
        }
        bindings = [port.split(":") for ports in published.values() for port in ports]
        assert bindings, "nothing is published"
        assert all(len(parts) == 3 and parts[0] == address for parts in bindings), published
        assert {"dashboard", "grafana", "prometheus"} <= {name for name, ports in published.items() if ports}


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

    connector = NATIVE_KAFKA_PACKAGE.format(version=importlib.metadata.version("pyspark"))
    online = stack_factory("base", {"REDIS_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y"})
    conf = AlertingSettings.model_validate(
        {"spark_conf": online.environment("alerting")["ALERTING_SPARK_CONF"]}
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


def test_dashboard_names_what_runs(base_stack: Any) -> None:
    import json

    info = json.loads(base_stack.environment("dashboard")["CRYPTOPIPE_RUNTIME_INFO"])
    kafka_tag = base_stack.services["broker"]["image"].rsplit(":", 1)[1]
    redis_tag = base_stack.services["redis"]["image"].rsplit(":", 1)[1]
    assert kafka_tag in info["broker"]
    assert redis_tag in info["redis"]
    assert "local[2]" in info["spark"]
