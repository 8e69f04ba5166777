"""``Primary``: a small real exclusive resolver whose host and spare candidates a test sets."""

from __future__ import annotations

from collections.abc import Callable, Collection


class Primary:
    """An exclusive resolver naming one label at a time, with spare candidates that change."""

    exclusive = True

    def __init__(self, label: str) -> None:
        self.label = label
        self.spares: list[str] = []
        self.listeners: list[Callable[[str | None], None]] = []

    async def __call__(self) -> str:
        return self.label

    def candidates(self) -> Collection[str]:
        return list(self.spares)

    def add_listener(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)

    def switch(self, label: str) -> None:
        self.label = label
        for callback in list(self.listeners):
            callback(label)
