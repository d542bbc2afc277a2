"""Hostile inputs against every converter: how the time of one conversion grows with its size.

Converters: Matrix HTML -> RichText (`chanmux_matrix.html.parse_html`), RichText -> Matrix HTML
(`render_html`) and to event contents (`Renderer.parts`), an IRC line
(`chanmux_irc.protocol.parse`), mIRC formatting -> RichText (`chanmux_irc.formatting.parse`),
RichText -> mIRC (`render_line`), `RichText.split_bytes` and `chanmux_irc.split.split`. Each
case is an input built to be the worst its converter can meet (deep nesting, many end tags,
huge attributes, entities, comments, many colour codes, one long token, many links...), at
1, 2, 4, ... 64 KiB. In process, no network.

Prints one JSON line per (converter, case, size): the best of a few runs, wall and CPU time
(time.process_time) in milliseconds; "raises" instead when the converter raises on that input
(the run goes on). Then one summary line per case: the growth exponent, the slope of
log(CPU time) against log(size) over the sizes from 4 KiB (about 1.0 when the time is linear in
the input, 2.0 when quadratic), the same slope over the last step alone (a converter that
changes strategy at some size, such as a splitter that starts to split, shows it there), and
the worst time. A case whose run takes longer than --budget seconds stops growing there.
Last, the worst case of each converter. A calibration line (the CPU time of a fixed piece of
pure Python) comes first and last, to compare figures taken on other machines or under load.

Usage: python benchmarks/hostile.py [--quick] [--budget SECONDS] [--only CONVERTER[,...]]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from chanmux import Message, RichText, Segment, User
from chanmux_irc import formatting, protocol, split
from chanmux_matrix.html import parse_html, render_html
from chanmux_matrix.outgoing import Renderer

KIB = 1024
SIZES = (1, 2, 4, 8, 16, 32, 64)
QUICK_SIZES = (4, 16, 64)

IRC_NICK = User(id="nick", plug="irc", username="nick")


def repeat(unit: str, size: int) -> str:
    """`unit` repeated to `size` characters (cut at the end)."""
    return (unit * (size // len(unit) + 1))[:size]


def pairs(opening: str, closing: str, size: int) -> str:
    """As many `opening` then as many `closing` as fit `size`."""
    count = size // (len(opening) + len(closing))
    return opening * count + closing * count


def counted(template: str, size: int) -> str:
    """`template` filled with 0, 1, 2, ... in base 36 (so no two texts are alike), to `size`."""
    out: list[str] = []
    total = i = 0
    while total < size:
        digits, number = "", i
        while True:
            number, digit = divmod(number, 36)
            digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
            if not number:
                break
        piece = template.replace("{}", digits)
        out.append(piece)
        total += len(piece)
        i += 1
    return "".join(out)[:size]


def segments(size: int, make: Callable[[int], Segment], width: int) -> RichText:
    return RichText([make(i) for i in range(size // width)])


#: converter -> (function taking the input, {case: input of a size in bytes})
def cases() -> dict[str, tuple[Callable[[Any], Any], dict[str, Callable[[int], Any]]]]:
    renderer = Renderer("matrix", "{name}: ", "{name} ")

    def mention_nick(seg: Segment) -> str:
        return seg.mention.username if seg.mention else seg.text

    return {
        "matrix html -> richtext": (parse_html, {
            "nested lists": lambda n: repeat("<ol><li>", n),
            "nested lists with text": lambda n: repeat("<ul><li>item ", n),
            "nested inline tags": lambda n: repeat("<b><i><u><s><code>", n),
            "inline tags and text": lambda n: repeat("<i>x", n),
            "alternating formats": lambda n: repeat("<b>x</b>y", n),
            "alternating formats, every text new": lambda n: counted("<b>{}</b>{}", n),
            "blocks between formats": lambda n: repeat("<b>#<p>", n),
            "many end tags": lambda n: pairs("<i>", "</p>", n),
            "unclosed tags": lambda n: repeat("<a ", n),
            "many attributes": lambda n: "<a " + repeat("b=c ", n - 5) + ">x",
            "huge attribute": lambda n: '<a href="https://example.org/' + "a" * n + '">x</a>',
            "entities": lambda n: repeat("&amp;&lt;&#x263A;&notin;", n),
            "numeric entity": lambda n: "&#" + "9" * n + ";",
            "comments": lambda n: repeat("<!-- c -->", n),
            "unclosed comment": lambda n: "x<!--" + "y" * n,
            "bogus markup": lambda n: repeat("</ <? <!x>", n),
            "quoted lines": lambda n: pairs("<blockquote>", "", n // 2) + repeat("x<br>", n // 2),
            "paragraphs": lambda n: repeat("<p>x</p>", n),
            "nested links": lambda n: repeat("<a href='https://e.org/'>x", n),
            "script escapes": lambda n: repeat("<script><!--<script>", n),
            "preformatted lines": lambda n: "<pre>" + repeat("x\n", n) + "</pre>",
        }),
        "richtext -> matrix html": (render_html, {
            "alternating formats": lambda n: segments(n, lambda i: Segment("x", bold=bool(i % 2)), 1),
            "same format segments": lambda n: segments(n, lambda i: Segment("x"), 1),
            "escapes and newlines": lambda n: RichText.plain_text(repeat("<&>\n", n)),
            "many links": lambda n: segments(n, lambda i: Segment("l ", link="https://e.org/?a&b"), 2),
            "preformatted lines": lambda n: segments(
                n, lambda i: Segment("code", pre=True) if i % 2 else Segment("\n"), 3),
        }),
        "richtext -> matrix events": (lambda rt: renderer.parts(Message(text=rt), None), {
            "one long token": lambda n: RichText.plain_text("x" * n),
            "alternating formats": lambda n: segments(n, lambda i: Segment("x ", bold=bool(i % 2)), 2),
        }),
        "irc line parse": (protocol.parse, {
            "many tags": lambda n: "@" + repeat("k=v;", n) + " :n!u@h PRIVMSG #c :x",
            "escaped tag value": lambda n: "@a=" + repeat("\\s\\:", n) + " :n!u@h PRIVMSG #c :x",
            "many parameters": lambda n: "PRIVMSG" + repeat(" a", n),
            "long trailing": lambda n: "PRIVMSG #c :" + "x" * n,
        }),
        "mirc -> richtext": (formatting.parse, {
            "colour codes": lambda n: repeat("\x0304,12x", n),
            "colours only": lambda n: repeat("\x0304", n) + "x",
            "toggles": lambda n: repeat("\x02x", n),
            "every code": lambda n: repeat("\x02\x1d\x1f\x1e\x11\x16\x0f\x03", n),
        }),
        "richtext -> mirc": (lambda rt: formatting.render_line(rt, mention_nick), {
            "toggled segments": lambda n: segments(n, lambda i: Segment("x", bold=bool(i % 2)), 1),
            "many links": lambda n: segments(n, lambda i: Segment("l", link="https://e.org/"), 15),
            "many mentions": lambda n: segments(n, lambda i: Segment("nick", mention=IRC_NICK), 4),
        }),
        "richtext.split_bytes": (lambda rt: rt.split_bytes(400), {
            "one long token": lambda n: RichText.plain_text("x" * n),
            "many segments": lambda n: segments(n, lambda i: Segment("x ", bold=bool(i % 2)), 2),
        }),
        "irc split": (lambda rt: split.split(rt, 400, "utf-8", mention_nick), {
            "one long token": lambda n: RichText.plain_text("x" * n),
            "many links": lambda n: segments(n, lambda i: Segment("l ", link="https://e.org/"), 16),
            "many mentions": lambda n: segments(n, lambda i: Segment("nick ", mention=IRC_NICK), 5),
        }),
    }


def measure(fn: Callable[[Any], Any], data: Any, runs: int) -> tuple[float, float]:
    """Best wall and CPU seconds of `runs` calls of fn(data)."""
    best_wall = best_cpu = math.inf
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn(data)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_wall, best_cpu


def exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(time) against log(size), over sizes from 4 KiB."""
    usable = [(math.log(size), math.log(max(t, 1e-6))) for size, t in points if size >= 4]
    if len(usable) < 2:
        return None
    mx = sum(x for x, _ in usable) / len(usable)
    my = sum(y for _, y in usable) / len(usable)
    var = sum((x - mx) ** 2 for x, _ in usable)
    return sum((x - mx) * (y - my) for x, y in usable) / var


def run_case(converter: str, case: str, fn: Callable[[Any], Any], make: Callable[[int], Any],
             sizes: tuple[int, ...], runs: int, budget: float) -> Iterator[dict]:
    points: list[tuple[int, float]] = []
    worst: dict[str, Any] | None = None
    for kib in sizes:
        data = make(kib * KIB)
        try:
            wall, cpu = measure(fn, data, runs)
        except Exception as exc:  # noqa: BLE001 - a converter that raises is a finding, not a stop
            yield {"converter": converter, "case": case, "kib": kib,
                   "raises": f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"}
            continue
        points.append((kib, cpu))
        row = {"converter": converter, "case": case, "kib": kib,
               "wall_ms": round(wall * 1000, 2), "cpu_ms": round(cpu * 1000, 2)}
        if worst is None or cpu * 1000 >= worst["cpu_ms"]:
            worst = row
        yield row
        if wall > budget:
            yield {"converter": converter, "case": case, "kib": kib,
                   "stopped": f"one run took {wall:.1f}s, over the budget of {budget:g}s"}
            break
    slope = exponent(points)
    last = exponent(points[-2:]) if len(points) >= 2 and points[-2][0] >= 4 else None
    yield {"converter": converter, "case": case, "summary": True,
           "exponent": None if slope is None else round(slope, 2),
           "last_step": None if last is None else round(last, 2),
           "worst_cpu_ms": worst["cpu_ms"] if worst else None,
           "worst_wall_ms": worst["wall_ms"] if worst else None,
           "at_kib": worst["kib"] if worst else None}


def calibration() -> dict:
    """CPU time of a fixed piece of pure Python, to compare figures taken on other machines
    (or on this one while something else runs)."""
    best = math.inf
    for _ in range(5):
        cpu = time.process_time()
        sum(range(1_000_000))
        best = min(best, time.process_time() - cpu)
    return {"calibration": "sum(range(1_000_000))", "cpu_ms": round(best * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 4, 16 and 64 KiB, one run each")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds one run may take before a case stops growing")
    parser.add_argument("--runs", type=int, default=5, help="runs per size (the best counts)")
    parser.add_argument("--only", default="", help="comma-separated converters (substrings)")
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES
    runs = 1 if args.quick else args.runs
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    print(json.dumps(calibration()), flush=True)
    for converter, (fn, inputs) in cases().items():
        if wanted and not any(w in converter for w in wanted):
            continue
        worst: dict[str, Any] | None = None
        for case, make in inputs.items():
            for row in run_case(converter, case, fn, make, sizes, runs, args.budget):
                print(json.dumps(row, ensure_ascii=False), flush=True)
                if row.get("summary") and row["worst_cpu_ms"] is not None and (
                        worst is None or row["worst_cpu_ms"] > worst["worst_cpu_ms"]):
                    worst = row
        if worst is not None:
            print(json.dumps({"converter": converter, "worst_case": worst["case"],
                              "worst_cpu_ms": worst["worst_cpu_ms"], "at_kib": worst["at_kib"],
                              "exponent": worst["exponent"]}), flush=True)
    print(json.dumps(calibration()), flush=True)


if __name__ == "__main__":
    main()
