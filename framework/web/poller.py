"""waitress's event loop, with one epoll set kept from turn to turn instead of a poll set built anew.

Each turn, waitress asks every connection whether it wants to read or write and builds a new poll
set from the answers: ~2.7 µs a connection a turn. At a few hundred requests a second each request
is a turn of its own, so 16 keep-alive connections cost ~45 µs a request and 64 cost ~170 (an API
server keeps a pool of them; several API servers, several pools). :class:`Poller` keeps one epoll
set and asks only the connections that can have changed since the last turn: those that had
events in it (and were answered after it, on the loop's thread). It asks every connection when
something else may have changed one: a worker thread pulled waitress's trigger (it does after each
request it answers, and when it cannot send all it wrote), waitress's once-a-second maintenance
ran (it closes idle and overdue connections), or the caller says so (the drain).

What each connection is asked and what its answer means are waitress's (``readable``, ``writable``,
``wasyncore.readwrite``); a connection that wants neither is out of the set, as with waitress's poll.
"""

from __future__ import annotations

import select

from waitress import wasyncore

_READ = select.POLLIN | select.POLLPRI  # the same bits as EPOLLIN | EPOLLPRI


class Poller:
    def __init__(self, map: dict, server):
        self.map, self.server = map, server
        self.epoll = select.epoll()
        self.interest: dict = {}  # fd -> (channel, flags in the set; 0: not in it)
        self.changed: set = set()  # channels to ask at the next turn
        self.ask_all = True

    def turn(self, timeout: float, ask_all: bool = False) -> None:
        """Wait up to ``timeout`` seconds for events and handle them, as ``wasyncore.poll2``."""
        server, interest, map = self.server, self.interest, self.map
        cleanup = server.next_channel_cleanup
        self._ask(server)  # its readable() runs the maintenance when due
        for fd in interest.keys() - map.keys():  # closed since
            self._forget(fd)
        if ask_all or self.ask_all or server.next_channel_cleanup != cleanup:
            self.ask_all = False
            self.changed.clear()
            for channel in list(map.values()):
                if channel is not server:
                    self._ask(channel)
        else:
            changed, self.changed = self.changed, set()
            for channel in changed:
                if map.get(channel._fileno) is channel:
                    self._ask(channel)
        trigger = server.trigger
        for fd, flags in self.epoll.poll(timeout):
            channel = map.get(fd)
            if channel is None:
                continue
            wasyncore.readwrite(channel, flags)
            if channel is trigger or channel is server:
                self.ask_all = True  # a worker thread changed some connection; a new connection
            else:
                self.changed.add(channel)

    def _ask(self, channel) -> None:
        fd = channel._fileno
        if fd is None:
            return
        flags = _READ if channel.readable() else 0
        if channel.writable() and not channel.accepting:
            flags |= select.POLLOUT
        known = self.interest.get(fd)
        if known is not None and known[0] is not channel:
            self._forget(fd)  # the descriptor was closed and reused
            known = None
        was = known[1] if known is not None else 0
        if flags == was and known is not None:
            return
        if not flags:
            self._unregister(fd)
        elif not was:
            try:
                self.epoll.register(fd, flags)
            except FileExistsError:
                self.epoll.modify(fd, flags)
        else:
            self.epoll.modify(fd, flags)
        self.interest[fd] = (channel, flags)

    def _forget(self, fd: int) -> None:
        channel, flags = self.interest.pop(fd)
        if flags:
            self._unregister(fd)

    def _unregister(self, fd: int) -> None:
        try:
            self.epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # closed already: the kernel dropped it from the set

    def close(self) -> None:
        self.epoll.close()
