"""Java for the Spark job: found, or one clear line saying how to get it (the rest still runs)."""

from __future__ import annotations

from cryptopipe.pipeline.say import say


def find_java() -> str | None:
    """The java executable Spark will use, or None after one line saying how to get one."""
    from cryptopipe.alerting.errors import JavaNotFoundError
    from cryptopipe.alerting.spark import find_java as spark_java

    try:
        return spark_java().executable
    except JavaNotFoundError as exc:
        say(
            f"cryptopipe up: no usable Java ({exc}), so the Spark alerting job will not run. "
            "Install Java 17+ (apt-get install openjdk-17-jre-headless, or brew install openjdk@17) "
            "or set JAVA_HOME; "
            "--no-alerting silences this."
        )
        return None
