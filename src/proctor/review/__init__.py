"""Human review: queues, items, grants."""

from .items import ReviewItem, get_item, list_items

__all__ = ["ReviewItem", "get_item", "list_items"]
