"""Entry point: python -m core. Ctrl-C or SIGTERM while the command line loads (nothing is written yet) ends it at
once with the line and exit code ``core.cli.main`` gives later (an extension module interrupted while it loads
would otherwise fail with an ImportError)."""

import os
import signal
import sys

STOPPED = {signal.SIGINT: (b"interrupted\n", 130), signal.SIGTERM: (b"terminated\n", 143)}


def _stop_while_loading(number: int, frame: object) -> None:
    line, code = STOPPED[number]
    os.write(2, line)
    os._exit(code)


loading = {number: signal.signal(number, _stop_while_loading) for number in STOPPED
           if signal.getsignal(number) != signal.SIG_IGN}
from core.cli import main  # noqa: E402  (after the handlers above)

for number, handler in loading.items():
    signal.signal(number, handler)
sys.exit(main())
