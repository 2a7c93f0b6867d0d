"""Anonymous figures for the cooperation: counts per month, organisation, topic and language.

Only counts, durations and averages leave this module: no client, conversation or adviser identifier, no
text, no town or age. Months are calendar months in UTC.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import Appointment, Message, Ticket, as_utc

DIMENSIONS = ("month", "organisation", "topic", "language")
CSV_COLUMNS = (
    "month", "organisation", "topic", "language", "questions", "handoffs", "bookings", "claimed",
    "wait_median_minutes", "wait_mean_minutes", "ratings", "rating_mean",
)  # fmt: skip


@dataclass
class Cell:
    """The figures of one group."""

    questions: int = 0
    handoffs: int = 0
    bookings: int = 0
    waits: list[float] = field(default_factory=list)
    ratings: list[int] = field(default_factory=list)

    def add(self, other: Cell) -> None:
        """Add another group's figures to this one."""
        self.questions += other.questions
        self.handoffs += other.handoffs
        self.bookings += other.bookings
        self.waits += other.waits
        self.ratings += other.ratings

    @property
    def wait_median(self) -> float | None:
        """Median minutes from ticket to claim."""
        return statistics.median(self.waits) if self.waits else None

    @property
    def wait_mean(self) -> float | None:
        """Mean minutes from ticket to claim."""
        return statistics.fmean(self.waits) if self.waits else None

    @property
    def rating_mean(self) -> float | None:
        """Mean rating (1-5)."""
        return statistics.fmean(self.ratings) if self.ratings else None


Key = tuple[str, str, str, str]
"""(month, organisation, topic, language); empty where a figure has no such attribute."""


@dataclass(frozen=True)
class Figures:
    """All groups at the finest grain, with totals along each dimension."""

    cells: dict[Key, Cell]

    def by(self, dimension: str) -> list[tuple[str, Cell]]:
        """Totals along one dimension, sorted by its value."""
        index = DIMENSIONS.index(dimension)
        totals: dict[str, Cell] = defaultdict(Cell)
        for key, cell in self.cells.items():
            totals[key[index]].add(cell)
        return sorted(totals.items())

    def total(self) -> Cell:
        """Everything together."""
        result = Cell()
        for cell in self.cells.values():
            result.add(cell)
        return result


def _month(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m")


async def collect(session: AsyncSession) -> Figures:
    """Count questions (client messages), handoffs (tickets), bookings, waiting times and ratings."""
    cells: dict[Key, Cell] = defaultdict(Cell)
    # Messages are the big table: group by day in SQL, by month here (UTC in both databases).
    stamp_utc = (
        func.timezone("UTC", Message.created_at)
        if session.get_bind().dialect.name == "postgresql"
        else Message.created_at
    )
    day = func.date(stamp_utc)
    questions = await session.execute(
        select(day, Message.language, func.count(Message.id))
        .where(Message.author == "client")
        .group_by(day, Message.language)
    )
    for stamp, language, count in questions:
        cells[(str(stamp)[:7], "", "", language or "")].questions += int(count)
    tickets = await session.execute(
        select(
            Ticket.created_at,
            Ticket.claimed_at,
            Ticket.organisation,
            Ticket.topic,
            Ticket.language,
            Ticket.rating,
        )
    )
    for created, claimed, organisation, topic, language, rating in tickets:
        cell = cells[(_month(created), organisation, topic or "", language)]
        cell.handoffs += 1
        if claimed is not None:
            cell.waits.append(max(0.0, (as_utc(claimed) - as_utc(created)).total_seconds() / 60))
        if rating is not None:
            cell.ratings.append(int(rating))
    bookings = await session.execute(
        select(
            Appointment.created_at, Appointment.organisation, Appointment.topic, Appointment.language
        ).where(Appointment.status != "cancelled")
    )
    for created, organisation, topic, language in bookings:
        cells[(_month(created), organisation, topic or "", language)].bookings += 1
    return Figures(cells=dict(cells))


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def to_csv(figures: Figures) -> str:
    """One row per month, organisation, topic and language (questions carry only month and language)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for key in sorted(figures.cells):
        cell = figures.cells[key]
        writer.writerow(
            [
                *key,
                cell.questions,
                cell.handoffs,
                cell.bookings,
                len(cell.waits),
                _number(cell.wait_median),
                _number(cell.wait_mean),
                len(cell.ratings),
                _number(cell.rating_mean),
            ]
        )
    return buffer.getvalue()


SERIES = (
    ("questions", "Fragen", "#0b57d0"),
    ("handoffs", "Übergaben", "#b3261e"),
    ("bookings", "Termine", "#146c2e"),
)


def chart_svg(months: Iterable[tuple[str, Cell]], *, width: int = 720, row: int = 110) -> str:
    """Bars per month for questions, handoffs and bookings, each on its own scale (inline SVG)."""
    data = list(months)[-12:]
    left, top, gap = 90, 20, 28
    height = top + len(SERIES) * (row + gap) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-labelledby="chart-title">',
        '<title id="chart-title">Fragen, Übergaben und Termine je Monat</title>',
    ]
    slot = (width - left - 10) / max(1, len(data))
    for index, (attribute, title, colour) in enumerate(SERIES):
        base = top + index * (row + gap) + row
        values = [int(getattr(cell, attribute)) for _month_key, cell in data]
        peak = max(values, default=0) or 1
        parts.append(
            f'<text x="0" y="{base - row / 2:.0f}" font-size="13" fill="#1a1a1a">{escape(title)}</text>'
        )
        parts.append(f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#999"/>')
        for position, ((month, _cell), value) in enumerate(zip(data, values, strict=True)):
            bar = (row - 16) * value / peak
            x = left + position * slot + slot * 0.15
            parts.append(
                f'<rect x="{x:.1f}" y="{base - bar:.1f}" width="{slot * 0.7:.1f}" height="{bar:.1f}" '
                f'fill="{colour}"><title>{escape(month)}: {value}</title></rect>'
            )
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{base - bar - 3:.1f}" font-size="11" '
                f'text-anchor="middle" fill="#1a1a1a">{value}</text>'
            )
            if index == len(SERIES) - 1:
                parts.append(
                    f'<text x="{x + slot * 0.35:.1f}" y="{base + 16:.1f}" font-size="11" '
                    f'text-anchor="middle" fill="#1a1a1a">{escape(month)}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)
