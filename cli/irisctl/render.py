"""Everything irisctl prints: progress on stderr, tables or JSON on stdout.

The work (:mod:`irisctl.ops`) returns plain data; this module only shows it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from irisctl.humanize import human_bytes, human_duration
from irisctl.runner import PlayEvent

# Piped output keeps whole lines (no 80-column truncation of host names and versions).
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True, highlight=False)

_STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "unreachable": "bold red",
    "skipped": "dim",
    "ignored": "dim red",
}


JSON_EMITTED = "irisctl.json_emitted"


def emit_json(data: Any) -> None:
    """JSON on stdout, nothing else: safe to pipe into jq."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # a later error must not print a second document
        ctx.meta[JSON_EMITTED] = True


def json_line(data: Any) -> None:
    """One compact JSON object on its own line (JSON Lines), flushed at once for followers."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def error_line(message: str, details: list[str] | None = None) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")
    for line in details or []:
        err.print(f"  {escape(line)}", style="dim")


def step(message: str) -> None:
    err.print(f"[bold]==>[/] {escape(message)}")


class ProgressPrinter:
    """Progress of a running play: task names, per-host results, elapsed time.

    With ``raw`` (``-v``) it prints Ansible's own output instead.
    """

    def __init__(self, raw: bool = False, console: Console | None = None) -> None:
        self.raw = raw
        self.console = console or err

    def __call__(self, event: PlayEvent) -> None:
        stamp = f"[dim]{event.elapsed:6.1f}s[/]"
        if event.kind == "raw":
            if self.raw:
                self.console.print(escape(event.stdout))
            return
        if self.raw:
            return
        if event.kind == "play":
            self.console.print(f"{stamp} [bold]PLAY[/] {escape(event.task)}")
        elif event.kind == "task":
            self.console.print(f"{stamp}   {escape(event.task)}")
        elif event.kind in ("changed", "failed", "unreachable", "ignored"):
            style = _STYLE[event.kind]
            message = f": {escape(event.message)}" if event.message else ""
            self.console.print(
                f"{stamp}     [{style}]{event.kind}[/] {escape(event.host)}{message}"
            )


def _ok(flag: bool) -> str:
    return "[green]ok[/]" if flag else "[bold red]FAIL[/]"


def _state(unit: dict[str, Any]) -> str:
    state = unit["state"]
    color = "green" if state == "active" else "red"
    text = f"[{color}]{state}[/]"
    if unit.get("uptime_seconds") is not None:
        text += f" (up {human_duration(unit['uptime_seconds'])})"
    return text


def status_table(data: dict[str, Any]) -> None:
    table = Table(title="IRIS status")
    for column in ("host", "service", "version", "nginx", "certificate", "disk free", "cache"):
        table.add_column(column)
    for host in data["hosts"]:
        cert = host["certificate"]
        disk = host["disk"]
        cache = host["cache"]
        table.add_row(
            host["host"],
            _state(host["service"]),
            host["version"] or "-",
            _state(host["nginx"]),
            f"{cert['days_left']} days" if cert else "[red]none[/]",
            f"{human_bytes(disk['free_bytes'])} ({disk['free_percent']}%)" if disk else "-",
            f"{cache['entries']} files, {human_bytes(cache['bytes'])}" if cache else "-",
        )
    out.print(table)
    version_drift(data)


def version_drift(data: dict[str, Any]) -> None:
    """One line when the hosts do not all serve the same release."""
    if not data.get("drift"):
        return
    spread = "; ".join(f"{v}: {', '.join(hosts)}" for v, hosts in data["versions"].items())
    out.print(f"[bold yellow]version drift[/]: the hosts serve different releases ({spread})")


def releases_table(data: dict[str, Any]) -> None:
    for host in data["hosts"]:
        table = Table(title=f"releases on {host['host']}")
        for column in ("", "version", "installed", "age"):
            table.add_column(column)
        for release in host["releases"]:
            table.add_row(
                "[green]*[/]" if release["current"] else "",
                release["version"],
                release["installed"] or "-",
                human_duration(release["age_seconds"]) + " ago",
            )
        out.print(table)
    version_drift(data)


def health_table(data: dict[str, Any]) -> None:
    for host in data["hosts"]:
        verdict = "[green]healthy[/]" if host["healthy"] else "[bold red]UNHEALTHY[/]"
        table = Table(title=f"{host['host']}: {verdict}")
        for column in ("check", "", "detail"):
            table.add_column(column)
        for check in host["checks"]:
            table.add_row(check["name"], _ok(check["ok"]), escape(str(check["detail"])))
        out.print(table)
    entry = data.get("balancer")
    if entry:
        out.print(
            f"load balancer {entry['host']}: {_ok(entry['ok'])} {entry['name']}: "
            f"{escape(str(entry['detail']))}"
        )
    version_drift(data)


def summary(data: dict[str, Any]) -> None:
    """The closing lines of deploy, provision, rollback and restart."""
    serving = ", ".join(f"{h}={v or '-'}" for h, v in data["serving"].items()) or "-"
    verdict = "[green]healthy[/]" if data["healthy"] else "[bold red]UNHEALTHY[/]"
    out.print(
        f"[bold]{data['action']}[/] done in {data['duration_seconds']}s: "
        f"serving {serving} on {len(data['hosts'])} host(s), {verdict}"
    )
    for host in data["health"]:
        for check in host["checks"]:
            if not check["ok"]:
                out.print(f"  [red]{host['host']}: {check['name']}: {escape(check['detail'])}[/]")


def check_summary(data: dict[str, Any]) -> None:
    changes = data["changes"]
    out.print(
        f"[bold]check[/] (nothing changed) for release {data.get('version')}: "
        f"{len(changes)} task(s) would change on {len(data['hosts'])} host(s)"
    )
    for change in changes:
        out.print(f"  [yellow]would change[/] {change['host']}: {escape(change['task'])}")
        if change["diff"]:
            out.print(escape(change["diff"].rstrip()), style="dim")


_COUNTER_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("hit rate", lambda s: _percent(s.get("hit_rate"))),
    ("hits / misses", lambda s: f"{s.get('hits', '-')} / {s.get('misses', '-')}"),
    ("model calls", lambda s: str(s.get("model_calls", "-"))),
    ("tokens in / out", lambda s: f"{s.get('input_tokens', '-')} / {s.get('output_tokens', '-')}"),
    ("cost spent", lambda s: _usd(s.get("cost_spent_usd"))),
    ("cost saved", lambda s: _usd(s.get("cost_saved_usd"))),
]


def cache_stats_table(data: dict[str, Any]) -> None:
    rows = [
        ("entries", lambda s: str(s.get("entries"))),
        ("bytes on disk", lambda s: human_bytes(s.get("bytes"))),
        *_COUNTER_ROWS,
        ("oldest entry", lambda s: str(s.get("oldest_entry") or "-")),
        ("newest entry", lambda s: str(s.get("newest_entry") or "-")),
        ("model spend today", lambda s: _spend(s.get("budget") or {})),
    ]
    table = Table(title="IRIS cache")
    table.add_column("")
    for host in data["hosts"]:
        table.add_column(host["host"])
    for label, get in rows:
        table.add_row(label, *(get(host) for host in data["hosts"]))
    out.print(table)
    if data.get("fleet"):
        fleet_table(data["fleet"])


def fleet_table(fleet: dict[str, Any]) -> None:
    """The shared store's figures: each host that counted into it, and the fleet's total."""
    if "error" in fleet:
        out.print(f"[yellow]shared store {escape(fleet['url'])}: {escape(fleet['error'])}[/]")
        return
    used = f"{human_bytes(fleet.get('used_memory_bytes'))} used"
    if fleet.get("maxmemory_bytes"):
        used += f" of {human_bytes(fleet['maxmemory_bytes'])}"
    table = Table(title="IRIS fleet (shared cache store)")
    table.add_column("")
    hosts = sorted(fleet.get("hosts", {}))
    for host in hosts:
        table.add_column(host)
    table.add_column("fleet", style="bold")
    for label, get in _COUNTER_ROWS:
        table.add_row(label, *(get(fleet["hosts"][h]) for h in hosts), get(fleet["fleet"]))
    out.print(table)
    out.print(f"store {escape(fleet['url'])}: {fleet['entries']} entries, {used}")


def _spend(spend: dict[str, Any]) -> str:
    """Today's spend against its daily budget: ``$0.012000 of $5.00``."""
    if "spent_today_usd" not in spend:
        return "-"
    budget = spend.get("daily_budget_usd")
    limit = f"${float(budget):.2f}" if budget else "no budget"
    return f"{_usd(spend['spent_today_usd'])} of {limit}"


def new_key(data: dict[str, Any]) -> None:
    """A new key, shown once: the only place it is ever written."""
    out.print(f"key {escape(data['name'])}: [bold]{escape(data['key'])}[/]")
    err.print("[dim]Shown once: store it now. Hosts keep only its hash.[/]")


def keys_table(data: dict[str, Any]) -> None:
    table = Table(title=f"IRIS API keys ({', '.join(data['hosts'])})")
    for column in (
        "name",
        "created",
        "last used",
        "requests",
        "model calls",
        "cost",
        "rate/min",
        "spent today",
    ):
        table.add_column(column)
    default_rate = data.get("default_rate_per_minute")
    for key in data["keys"]:
        rate = key.get("rate_per_minute")
        rate = default_rate if rate is None else rate
        table.add_row(
            escape(key["name"]),
            str(key.get("created") or "-"),
            str(key.get("last_used") or "never"),
            str(key["requests"]),
            str(key["model_calls"]),
            _usd(key["cost_usd"]),
            "no limit" if not rate else str(rate),
            _spend(key),
        )
    out.print(table)
    out.print(f"all keys: {_spend(data['global'])}, resets {data['global']['budget_resets_at']}")
    if any(len(key.get("by_host") or []) > 1 for key in data["keys"]):
        by_host = Table(title=f"per host ({data.get('by_host_from', 'hosts')})")
        for column in ("name", "host", "requests", "model calls", "cost", "spent today"):
            by_host.add_column(column)
        for key in data["keys"]:
            for part in key.get("by_host") or []:
                spent = part.get("spent_today_usd")
                by_host.add_row(
                    escape(key["name"]),
                    escape(part["host"]),
                    str(part["requests"]),
                    str(part["model_calls"]),
                    _usd(part["cost_usd"]),
                    "-" if spent is None else _usd(spent),
                )
        out.print(by_host)


def _percent(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 100:.1f}%"


def _usd(value: Any) -> str:
    return "-" if value is None else f"${float(value):.6f}"


def aws_resources_table(data: dict[str, Any], title: str) -> None:
    """The deployment's AWS resources: what each is and what was (or would be) done to it."""
    table = Table(title=f"{title}: {data.get('deployment')} ({data.get('region')})")
    for column in ("resource", "name", "id", "exists", "action"):
        table.add_column(column)
    for item in data["resources"]:
        action = item.get("action") or "-"
        table.add_row(
            item["kind"],
            escape(str(item.get("name") or "-")),
            escape(str(item.get("id") or "-")),
            "yes" if item.get("exists") else "no",
            f"[yellow]{action}[/]" if action not in ("none", "-") else action,
        )
    out.print(table)


def plain(text: str) -> None:
    out.print(escape(text))


_SOURCE_STYLE = {"access": "cyan", "error": "yellow", "nginx-access": "blue", "nginx-error": "red"}


def log_record(record: dict[str, Any], show_host: bool = False) -> None:
    """One log record: every physical line tagged with its source (and host), unwrapped."""
    source = record["source"]
    style = _SOURCE_STYLE.get(source, "magenta")
    tag = f"[{style}]{escape(source):<6}[/] [dim]|[/] "
    if show_host:
        tag = f"[bold]{escape(record['host'])}[/] " + tag
    for line in record["line"].split("\n"):
        out.print(tag + escape(line), soft_wrap=True)


def value_text(value: Any) -> str:
    """A plain value for human output: never a Python repr of a list, dict, None or bool."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={value_text(v)}" for k, v in value.items())
    return str(value)


def working(message: str) -> Any:
    """A spinner on stderr while a read-only play runs (silent when not a terminal)."""
    from contextlib import nullcontext

    return err.status(escape(message)) if err.is_terminal else nullcontext()


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f} ms"


def _budget(model: dict[str, Any]) -> str:
    spent, limit = model.get("spent_today_usd"), model.get("daily_budget_usd")
    if spent is None:
        return "-"
    if not limit:
        return f"${float(spent):.4f} (no budget)"
    return f"${float(spent):.4f} / ${float(limit):.2f} ({model.get('budget_used_percent')}%)"


def top_table(data: dict[str, Any]) -> Table:
    """``irisctl top``: one row per host and the fleet (a renderable for rich's Live)."""
    table = Table(title=f"IRIS top, {data['at']}", caption="Ctrl-C to quit")
    for column in (
        "host",
        "release",
        "req/s",
        "in flight",
        "hit rate",
        "p50",
        "p99",
        "model calls",
        "spend today / budget",
        "cert days",
        "disk used",
    ):
        table.add_column(column, justify="left" if column in ("host", "release") else "right")

    def row(name: str, item: dict[str, Any], release: str, style: str | None = None) -> None:
        days = item.get("certificate_days_left")
        disk = item.get("disk_used_percent")
        table.add_row(
            escape(name),
            escape(release),
            f"{item['requests_per_second']:.2f}",
            _count(item.get("in_flight")),
            _percent(item["cache"].get("hit_rate")),
            _ms(item["latency_ms"]["p50"]),
            _ms(item["latency_ms"]["p99"]),
            _count(item["model"].get("calls")),
            _budget(item["model"]),
            "-" if days is None else str(days),
            "-" if disk is None else f"{disk}%",
            style=style,
        )

    for host in data["hosts"]:
        row(host["host"], host, host.get("release") or "-")
    fleet = data["fleet"]
    table.add_section()
    row(f"fleet ({fleet['hosts']})", fleet, ", ".join(fleet["releases"]) or "-", style="bold")
    return table


def aws_endpoints(endpoints: dict[str, Any] | None) -> None:
    """The fleet's outputs: where the public name must point, the certificate's validation
    record until ACM has issued it, and the hosts' IRIS_CACHE_URL."""
    if not endpoints:
        return
    if endpoints.get("record"):
        plain(f"point the public name at the load balancer: {endpoints['record']}")
    if not endpoints.get("https"):
        status = endpoints.get("certificate_status") or "not requested yet"
        plain(f"HTTPS waits for the certificate ({status}); ACM validates it through:")
        for record in endpoints.get("certificate_validation_records") or []:
            plain(f"  {record['name']} 300 IN {record['type']} {record['value']}")
    if endpoints.get("cache_url"):
        plain(
            f"IRIS_CACHE_URL: {endpoints['cache_url']}"
            f" (AUTH token in the secret {endpoints.get('cache_password_secret')})"
        )
