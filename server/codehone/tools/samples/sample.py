"""A small inventory module: the file `make run` opens to show completions."""

import json
import os
import sys
from dataclasses import dataclass


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0

    def total(self) -> float:
        return self.price * self.quantity


def load_items(path):
    """Read items from a JSON file."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return [Item(**entry) for entry in data]


def cheapest(items):
    best = None
    for item in items:
        if best is None or item.price < best.price:
            best = item
    return best


class Inventory:
    def __init__(self, items=None):
        self.items = list(items or [])

    def add(self, item):
        self.items.append(item)

    def value(self):
        return sum(item.total() for item in self.items)


if __name__ == "__main__":
    inventory = Inventory(load_items(sys.argv[1]))
    print(inventory.value())
