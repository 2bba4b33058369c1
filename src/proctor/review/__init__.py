"""Human review: queues, items, grants."""

from .items import ReviewItem, get_item, list_items
from .service import ReviewService

__all__ = ["ReviewItem", "ReviewService", "get_item", "list_items"]
