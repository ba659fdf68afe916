"""A throwaway ActiveMQ broker (Debian's ``activemq``) for tests, benchmarks and drills.

It listens for STOMP on 127.0.0.1 only, on a port of its own, keeps its
messages in a KahaDB store in a temporary directory (so durable subscriptions
survive :meth:`ActiveMQ.restart`), and is started and stopped as a Java
process of ours, by PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ActiveMQ", "find_activemq"]

_HOME = Path("/usr/share/activemq")
_CONFIG = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
  http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core
  http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false"
          brokerName="netbroker-test" dataDirectory="{data}" schedulerSupport="false">
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""


def find_activemq() -> Path | None:
    """The broker's launcher jar, or None where ActiveMQ (and Java) are missing."""
    jar = _HOME / "bin" / "activemq.jar"
    return jar if jar.exists() and shutil.which("java") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ActiveMQ:
    """One broker; a context manager. :attr:`port` is its STOMP port."""

    port: int = field(default_factory=_free_port)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="netbroker-amq-")))
    process: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def start(self) -> ActiveMQ:
        jar = find_activemq()
        if jar is None:
            raise RuntimeError("ActiveMQ not installed (Debian: apt-get install activemq)")
        conf = self.base / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "activemq.xml").write_text(_CONFIG.format(data=self.base / "data",
                                                          port=self.port))
        with (self.base / "broker.log").open("ab") as out:
            self.process = subprocess.Popen(
                ["java", "-Xms64M", "-Xmx256M", f"-Dactivemq.home={_HOME}",
                 f"-Dactivemq.base={self.base}", f"-Dactivemq.conf={conf}",
                 f"-Dactivemq.data={self.base / 'data'}", "-jar", str(jar), "start",
                 f"xbean:file:{conf / 'activemq.xml'}"],
                cwd=self.base, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("ActiveMQ did not start: "
                           + (self.base / "broker.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port and store (its messages kept)."""
        self.stop()
        self.start()

    def __enter__(self) -> ActiveMQ:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
