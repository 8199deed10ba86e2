"""Webhooks (issue 18): subscriptions, the delivery outbox, and the background sender.

Layering: ``events``, ``payloads`` and ``webhook_store`` sit beside ``storage`` (the registry's
``record_event`` writes the outbox through them, in the caller's transaction); ``sender`` and
``webhook_manager`` are wired by ``api/services.py``.
"""
