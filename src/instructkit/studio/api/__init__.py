"""The studio API: one router per page family (runs, data, jobs, chat, export)."""
