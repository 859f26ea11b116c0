"""CPU, memory, network and disk per component (the recorded component:*:* series)."""

from __future__ import annotations

from cryptopipe.observability.grafana.panels import Dashboard, Panel, Query, Row, single
from cryptopipe.observability.prometheus import WINDOW

INFRASTRUCTURE = Dashboard(
    uid="cryptopipe-infrastructure",
    title="cryptopipe: infrastructure",
    description="CPU, memory, network and disk per component "
    "(psutil in the embedded mode, cAdvisor in compose).",
    rows=(
        Row(
            "Resources per component",
            (
                single(
                    "CPU (cores)",
                    f"component:cpu_usage_cores:rate{WINDOW}",
                    "{{component}}",
                    description="CPU seconds per second, incl. child processes (the Spark driver's JVM).",
                ),
                single(
                    "Memory (RSS)",
                    "component:memory_rss_bytes:max",
                    "{{component}}",
                    unit="bytes",
                ),
                Panel(
                    "Network",
                    (
                        Query(f"component:network_receive_bytes:rate{WINDOW}", "{{component}} received"),
                        Query(f"component:network_transmit_bytes:rate{WINDOW}", "{{component}} sent"),
                    ),
                    unit="Bps",
                    description="Embedded mode: TCP payload per component, component=host: all interfaces; "
                    "compose: per container.",
                ),
                Panel(
                    "Disk",
                    (
                        Query(f"component:disk_read_bytes:rate{WINDOW}", "{{component}} read"),
                        Query(f"component:disk_write_bytes:rate{WINDOW}", "{{component}} written"),
                    ),
                    unit="Bps",
                ),
                single("Scrape targets up", "up", "{{job}} {{instance}}"),
            ),
        ),
    ),
)
