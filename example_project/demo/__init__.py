"""The demo of the example project: a page that walks every flow, and a dev mailbox.

Installed only when ``DEBUG`` is on. Emails the worker sends are stored by
:class:`demo.mail.MailboxBackend` and shown at ``/dev/mailbox/``, so a person can
follow a link or read a code without an SMTP server.
"""
