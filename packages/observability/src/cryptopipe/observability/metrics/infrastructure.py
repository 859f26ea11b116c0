"""Per-component resources (:mod:`cryptopipe.observability.process`; compose: cAdvisor).

Embedded mode samples the component's processes with psutil (root + all descendants, so the
Spark driver includes its JVM); compose reads the same quantities from cAdvisor. The recording
rules component:*:* (compose/prometheus/rules/recording.yml) give one series per meaning from
either source, preferring cAdvisor where both exist.
"""

from __future__ import annotations

from cryptopipe.observability.metrics.define import counter, gauge

PROCESS_CPU = counter(
    "cryptopipe_process_cpu_seconds",
    "CPU time (user + system) of the component's processes incl. descendants; rate() = cores used. "
    "Compose: container_cpu_usage_seconds_total.",
    ("component",),
    "infrastructure",
)
PROCESS_MEMORY = gauge(
    "cryptopipe_process_resident_memory_bytes",
    "Resident set size summed over the component's processes incl. descendants (shared pages count "
    "once per process). Compose: container_memory_rss.",
    ("component",),
    "infrastructure",
)
PROCESS_DISK_READ = counter(
    "cryptopipe_process_disk_read_bytes",
    "Bytes the component's processes caused to be read from storage (page-cache hits excluded). "
    "Compose: container_fs_reads_bytes_total.",
    ("component",),
    "infrastructure",
)
PROCESS_DISK_WRITE = counter(
    "cryptopipe_process_disk_write_bytes",
    "Bytes the component's processes caused to be written to storage (counted when pages are dirtied). "
    "Compose: container_fs_writes_bytes_total.",
    ("component",),
    "infrastructure",
)
PROCESS_NETWORK_RECEIVE = counter(
    "cryptopipe_process_network_receive_bytes",
    "Bytes received. Embedded mode, Linux: TCP payload bytes received on the component's sockets "
    "(sock_diag tcp_info; loopback included; a socket's last interval is lost when it closes between "
    'samples); component="host": all interfaces of the host incl. loopback (wire bytes). '
    "Compose: container_network_receive_bytes_total.",
    ("component",),
    "infrastructure",
)
PROCESS_NETWORK_TRANSMIT = counter(
    "cryptopipe_process_network_transmit_bytes",
    "Bytes sent. Embedded mode, Linux: TCP payload bytes sent and acknowledged on the component's "
    'sockets; component="host": all interfaces of the host incl. loopback. '
    "Compose: container_network_transmit_bytes_total.",
    ("component",),
    "infrastructure",
)
PROCESS_COUNT = gauge(
    "cryptopipe_process_count",
    "Live processes counted for the component (root + descendants); 0 once the root has exited.",
    ("component",),
    "infrastructure",
)
