"""A wallet's statement in its three forms: JSON (the API's), CSV (streamed, one row per
entry) and PDF (for people, made with fpdf2). Pure rendering of ledger rows: the
queries are in repository, the snapshot they run in is the service's."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from paysys.kit.money import format_amount

CSV_HEADER = (
    "at",
    "transaction_id",
    "type",
    "operation",
    "amount",
    "balance_after",
    "description",
    "counterparty_wallet_id",
)


def entry(row: Any, currency: str) -> dict[str, Any]:
    """One ledger row as the statement shows it (`operation` by the sign: a saga's
    compensation, kept as a 'refund' entry, is a credit)."""
    amount = int(row["amount"])
    return {
        "at": row["created_at"].isoformat(),
        "transaction_id": str(row["transaction_id"]),
        "type": row["kind"],
        "operation": "credit" if amount > 0 else "debit",
        "amount": format_amount(amount, currency),
        "balance_after": format_amount(int(row["balance_after"]), currency),
        "description": row["description"],
        "counterparty_wallet_id": (
            str(row["counterparty_wallet_id"]) if row["counterparty_wallet_id"] else None
        ),
    }


def _csv_text(rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def csv_chunks(rows: AsyncIterator[Any], currency: str, per_chunk: int = 500) -> Any:
    """The CSV, header first, a chunk of rows at a time (never the whole in memory)."""
    yield _csv_text([CSV_HEADER])
    batch: list[list[Any]] = []
    async for row in rows:
        e = entry(row, currency)
        batch.append(["" if e[k] is None else e[k] for k in CSV_HEADER])
        if len(batch) >= per_chunk:
            yield _csv_text(batch)
            batch = []
    if batch:
        yield _csv_text(batch)


@dataclass(frozen=True)
class Summary:
    wallet_id: str
    currency: str
    owner: str
    start: datetime
    end: datetime
    opening: int
    closing: int
    credits: int
    debits: int
    made_at: datetime  # when the statement was made: the chart stops there


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _latin(text: str | None) -> str:
    # The PDF's core font (Helvetica) covers Latin-1; anything else shows as "?".
    return (text or "").encode("latin-1", "replace").decode("latin-1")


def _chart(pdf: FPDF, s: Summary, entries: list[dict[str, Any]], raw: list[Any]) -> None:
    """The balance over the period as a step line, in a box 180 x 40 mm."""
    x0, y0, w, h = 15.0, pdf.get_y() + 2, 180.0, 40.0
    pdf.set_draw_color(180, 180, 180)
    pdf.rect(x0, y0, w, h)
    span = max((s.end - s.start).total_seconds(), 1.0)
    points = [(s.start, s.opening)] + [(r["created_at"], int(r["balance_after"])) for r in raw]
    points.append((min(s.end, max(s.made_at, s.start)), s.closing))
    top = max(max(b for _, b in points), 1)

    def at(t: datetime, b: int) -> tuple[float, float]:
        x = x0 + w * min(max((t - s.start).total_seconds() / span, 0.0), 1.0)
        return x, y0 + h - h * b / top

    line: list[tuple[float, float]] = []
    previous = None
    for t, b in points:
        x, y = at(t, b)
        if previous is not None:
            line.append((x, previous))  # a step: the balance holds until the next entry
        line.append((x, y))
        previous = y
    pdf.set_draw_color(37, 99, 235)
    pdf.set_line_width(0.5)
    pdf.polyline(line)
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_font("Helvetica", size=7)
    pdf.set_xy(x0, y0 + h + 1)
    pdf.cell(w / 2, 4, s.start.date().isoformat())
    pdf.cell(w / 2, 4, s.end.date().isoformat(), align="R")
    pdf.set_xy(x0 + 1, y0 + 1)
    pdf.cell(40, 4, f"max {format_amount(top, s.currency)} {s.currency}")
    pdf.set_y(y0 + h + 7)


def pdf_bytes(s: Summary, raw: list[Any]) -> bytes:
    """The statement for people: owner, period, balances, a chart, every entry."""
    entries = [entry(r, s.currency) for r in raw]
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, "paysys - wallet statement", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=10)
    money = f" {s.currency}"
    for label, value in (
        ("Owner", _latin(s.owner)),
        ("Wallet", f"{s.wallet_id} ({s.currency})"),
        ("Period", f"{_when(s.start)} to {_when(s.end)} (end excluded)"),
        ("Opening balance", format_amount(s.opening, s.currency) + money),
        ("Credits", format_amount(s.credits, s.currency) + money),
        ("Debits", format_amount(s.debits, s.currency) + money),
        ("Closing balance", format_amount(s.closing, s.currency) + money),
        ("Made", _when(s.made_at)),
    ):
        pdf.cell(40, 6, label)
        pdf.cell(0, 6, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    _chart(pdf, s, entries, raw)
    widths = (34, 22, 60, 32, 32)
    pdf.set_font("Helvetica", "B", 9)
    for width, title in zip(
        widths, ("Date (UTC)", "Type", "Description", "Amount", "Balance"), strict=True
    ):
        pdf.cell(width, 6, title, border="B", align="R" if width == 32 else "L")
    pdf.ln()
    pdf.set_font("Helvetica", size=8)
    if not entries:
        pdf.cell(0, 6, "No entries in this period.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for e in entries:
        cells = (
            e["at"][:19].replace("T", " "),
            e["type"] or "",
            _latin(e["description"])[:40],
            e["amount"],
            e["balance_after"],
        )
        for width, text in zip(widths, cells, strict=True):
            pdf.cell(width, 5, text, align="R" if width == 32 else "L")
        pdf.ln()
    return bytes(pdf.output())
