"""What the integration, example-project and browser tests run on, written once.

* :mod:`.waiting`: :func:`~.waiting.wait_until`, the one bounded poll.
* :mod:`.processes`: subprocesses in a group of their own, stopped or killed as
  one; a spare port; output collected to a file or line by line.
* :mod:`.workers`: ``celery worker`` and ``celery beat`` subprocesses on the test
  database and a broker of the test's choosing.
* :mod:`.commands`: ``manage.py`` commands in subprocesses, also several at once.
* :mod:`.brokers`: private ``redis-server`` processes, a broker that never
  answers, what a Redis broker still holds.
* :mod:`.smtp`: an aiosmtpd server in this process, with its fault modes, and the
  messages it received.
* :mod:`.delivery`: the outbox at rest; a failed delivery fails the test at once.
* :mod:`.http`: JSON requests over real HTTP, straight to the server.
* :mod:`.racing`: requests sent at the same moment, from threads.
* :mod:`.accounts`: the password and the unique addresses tests register with.
* :mod:`.gate`: skip when a service is missing, fail instead under ``CI``.
* :mod:`.example_project`: the example project, run with its own settings.
"""

from __future__ import annotations
