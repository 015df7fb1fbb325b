"""Embedded SFTP server of `edi serve` (reference §1.6), in three parts:

- `server`: listener, SSH transports, sessions, housekeeping (timeouts, partials, retention);
- `auth`: host key, partners' keys and passwords, login throttling;
- `files`: the chrooted file system a partner sees (`/in`, `/out`), upload/download handles.
"""
