"""Obtain Apache Kafka from Maven Central with ``mvn``, once, into a cache folder.

The cache holds one folder per pinned version with a ``lib/`` of jars and a ``.complete``
marker written last, so an interrupted fetch is redone and a complete one needs no network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from emostream.errors import ClusterError, PrerequisiteError

KAFKA_VERSION = "4.2.0"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.25.3"  # matches the log4j-core that kafka_2.13 pulls in; binds slf4j 1.7 to it
MIN_JAVA = 17

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.emostream</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def java_version(java: str = "java") -> int | None:
    """Major version of ``java`` on PATH, or None when there is none."""
    exe = shutil.which(java)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_version(out.stderr + out.stdout)


def parse_java_version(text: str) -> int | None:
    """Major version from ``java -version`` output (handles both "1.8.0_x" and "17.0.1")."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        return None
    major = int(m.group(1))
    if major == 1 and m.group(2):
        return int(m.group(2))
    return major


def require_java() -> str:
    """Path of a Java 17+ ``java``; PrerequisiteError saying what to install otherwise."""
    version = java_version()
    if version is None:
        raise PrerequisiteError(
            "Java not found on PATH; Kafka needs Java 17 or newer: install it "
            "(Debian/Ubuntu: 'sudo apt-get install openjdk-17-jre-headless') and retry"
        )
    if version < MIN_JAVA:
        raise PrerequisiteError(
            f"Java {version} found, Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+: install a newer JDK "
            "(Debian/Ubuntu: 'sudo apt-get install openjdk-17-jre-headless') and put it first on PATH"
        )
    return shutil.which("java")  # type: ignore[return-value]


def kafka_home(cache: Path, version: str = KAFKA_VERSION) -> Path:
    """Folder of one cached Kafka version."""
    return cache / f"kafka-{version}"


CLASS_ARCHIVE = "broker-classes.jsa"


def class_archive(cache: Path, version: str = KAFKA_VERSION) -> Path:
    """Where ``emostream kafka fetch`` keeps the brokers' class-data archive (AppCDS) for ``version``."""
    return kafka_home(cache, version) / CLASS_ARCHIVE


def class_archive_options(cache: Path, version: str = KAFKA_VERSION) -> list[str]:
    """JVM flags that map the brokers' class-data archive, when there is a checked one.

    The archive holds the ~8,000 classes a broker loads, already parsed and verified: a node
    starts on about half the CPU (3 brokers on the 2-core dev VM: 6.7 s of CPU and ready in 5.4 s,
    against 12.2 s and 9.3 s). It is used only while its stamp (written once this ``java`` mapped
    it, see :func:`stamp_class_archive`) still matches the file: a JVM shrugs off an archive of
    another Java build (``-Xlog:cds*=off`` keeps its warning out of the output), but one cut
    short (an interrupted copy, a partial cache restore) has a valid header and crashes every JVM
    that maps it (SIGBUS).
    """
    archive = class_archive(cache, version)
    stamp = _archive_stamp(archive)
    try:
        checked = stamp is not None and class_archive_stamp_file(cache, version).read_text(encoding="utf-8") == stamp
    except OSError:
        checked = False
    return [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds*=off"] if checked else []


def class_archive_stamp_file(cache: Path, version: str = KAFKA_VERSION) -> Path:
    """Where the stamp of a checked archive is kept (next to it)."""
    archive = class_archive(cache, version)
    return archive.with_name(archive.name + ".checked")


def _archive_stamp(archive: Path) -> str | None:
    """The archive's size and modification time and the ``java`` that checked it; None without either."""
    java = shutil.which("java")
    try:
        st = archive.stat()
    except OSError:
        return None
    return None if java is None else f"{st.st_size} {st.st_mtime_ns} {os.path.realpath(java)}\n"


def stamp_class_archive(cache: Path, version: str = KAFKA_VERSION) -> None:
    """Record that this ``java`` maps the archive as it is now (call after :func:`class_archive_usable`)."""
    stamp = _archive_stamp(class_archive(cache, version))
    if stamp is None:
        return
    target = class_archive_stamp_file(cache, version)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(stamp, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def forget_class_archive(cache: Path, version: str = KAFKA_VERSION) -> None:
    """Remove the archive and its stamp (the stamp first, so that no JVM is given the archive meanwhile)."""
    class_archive_stamp_file(cache, version).unlink(missing_ok=True)
    class_archive(cache, version).unlink(missing_ok=True)


def class_archive_usable(cache: Path, version: str = KAFKA_VERSION, archive: Path | None = None) -> bool | None:
    """True when this ``java`` maps ``archive`` (default: the cached one) with the cached jars
    (``-Xshare:on`` fails otherwise; a cut-off archive crashes this throwaway JVM, no other); False
    when it does not or there is no archive or java; None when the check itself did not finish (a
    timeout on a starved machine, java not runnable): that says nothing of the archive, which a
    caller must then leave as it is."""
    archive = archive or class_archive(cache, version)
    java = shutil.which("java")
    if not archive.is_file() or java is None:
        return False
    cmd = [java, f"-XX:SharedArchiveFile={archive}", "-Xshare:on", "-Xlog:cds*=off", "-XX:-CreateCoredumpOnCrash",
           "-cp", classpath(cache, version), "-version"]
    try:
        # In a folder of its own: a JVM that crashes on the archive writes hs_err_pid*.log there.
        with tempfile.TemporaryDirectory(prefix="emostream-cds-check-") as scratch:
            return subprocess.run(cmd, capture_output=True, timeout=60, cwd=scratch).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None


def is_fetched(cache: Path, version: str = KAFKA_VERSION) -> bool:
    """True when that version is fully in the cache."""
    return (kafka_home(cache, version) / ".complete").exists()


def classpath(cache: Path, version: str = KAFKA_VERSION) -> str:
    """The ``-cp`` argument for the cached jars."""
    return str(kafka_home(cache, version) / "lib" / "*")


def ensure_kafka(
    cache: Path,
    version: str = KAFKA_VERSION,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Make sure Kafka ``version`` is in ``cache`` (fetching it with mvn if not); returns its lib folder."""
    home = kafka_home(cache, version)
    lib = home / "lib"
    if is_fetched(cache, version):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PrerequisiteError(
            f"Kafka {version} is not cached in {home} and Maven ('mvn') is not on PATH to fetch it: "
            "install Maven (Debian/Ubuntu: 'sudo apt-get install maven') and retry"
        )
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM.format(scala=SCALA_VERSION, kafka=version, log4j=LOG4J_VERSION))
    if lib.exists():
        shutil.rmtree(lib)
    say(f"fetching Apache Kafka {version} from Maven Central into {home} (once) ...")
    cmd = [mvn, "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
           f"-DoutputDirectory={lib}", "-DincludeScope=runtime"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    downloaded = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-15:]
        if "Downloaded from" in line:
            downloaded += 1
            if downloaded % 10 == 0:
                say(f"  ... {downloaded} files downloaded")
        elif "Copying" in line:
            pass
    code = proc.wait()
    jars = list(lib.glob("*.jar")) if lib.exists() else []
    if code != 0 or not any(j.name.startswith(f"kafka_{SCALA_VERSION}-") for j in jars):
        detail = "\n".join(tail)
        raise ClusterError(
            f"could not fetch Kafka {version} with Maven (exit {code}); check network access to Maven Central "
            f"or a mirror in ~/.m2/settings.xml. Last output:\n{detail}"
        )
    (home / ".complete").write_text(version + "\n")
    say(f"Kafka {version} ready: {len(jars)} jars in {lib}")
    return lib
