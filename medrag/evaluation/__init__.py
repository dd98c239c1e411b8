"""Quality measurement: retrieval precision (``retrieval``) and labeler F1 (``labeler``)."""
