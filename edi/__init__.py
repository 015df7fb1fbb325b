"""edi — reception platform for electronic invoice flows (Chorus Pro EDI mode, 2026 reform)."""

__version__ = "0.1.0"
