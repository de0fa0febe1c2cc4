"""Presence events of one loop tick, net of each other, so that churn is not an amplifier.

A user who joins and leaves a presence channel within one loop tick was never seen by the other
subscribers: nothing is sent to them. Otherwise each user's net change goes out once at the end
of the tick: ``member_added`` for a user who was not a member before it, ``member_removed`` for
one who was and no longer is, nothing for one who left and came back with the same
``user_info`` (a page reload, a client resubscribing), and both (removed, then added) for one
who came back with other ``user_info``. The joining socket is left out of what concerns its own
user: its ``subscription_succeeded`` already says it (docs/protocol.md, "Presence members").

The node must flush a channel's pending changes before it sends anyone a snapshot of the channel
(``subscription_succeeded``) or another event on it, so that no subscriber sees a member twice
or an event out of order; only the pending departure of the user who is joining again may wait
(``keep``), since its events leave the joining socket out. Pure bookkeeping: the node delivers
what :meth:`take` returns.
"""

from __future__ import annotations

from ressonance.protocol import messages
from ressonance.protocol.presence import Member

Key = tuple[str, str]  # (app id, channel)


class _Change:
    """One user's change in one channel during this tick."""

    __slots__ = ("before", "exclude", "member", "was_member")

    def __init__(
        self,
        was_member: bool,
        member: Member | None,
        exclude: str | None,
        before: Member | None = None,
    ) -> None:
        self.was_member = was_member
        self.member = member  # the member at the end of the tick, None when gone
        self.exclude = exclude  # the socket whose join this is (it has the member already)
        self.before = before  # the member who left, when known


class PresenceChanges:
    """Pending ``member_added`` / ``member_removed`` per channel, one entry per user."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[Key, dict[str, _Change]] = {}

    def added(self, key: Key, member: Member, exclude: str | None) -> None:
        """``member``'s first socket in the cluster joined; ``exclude`` is that socket's id
        when it is on this node."""
        changes = self.pending.get(key)
        if changes is None:
            changes = self.pending[key] = {}
        change = changes.get(member.user_id)
        if change is None:
            changes[member.user_id] = _Change(False, member, exclude)
        else:
            change.member, change.exclude = member, exclude

    def removed(self, key: Key, user_id: str, before: Member | None = None) -> None:
        """``user_id``'s last socket in the cluster left; ``before`` is the member as it was,
        when known (so that its coming back unchanged within the tick sends nothing)."""
        changes = self.pending.get(key)
        if changes is None:
            changes = self.pending[key] = {}
        change = changes.get(user_id)
        if change is None:
            changes[user_id] = _Change(True, None, None, before)
        else:
            change.member, change.exclude = None, None

    def leaving(self, key: Key, user_id: str) -> bool:
        """True when ``user_id``'s departure from ``key`` is pending (and nothing after it)."""
        changes = self.pending.get(key)
        change = changes.get(user_id) if changes else None
        return change is not None and change.was_member and change.member is None

    def take(self, key: Key, keep: str | None = None) -> list[tuple[str, str | None]]:
        """The events of ``key``'s pending changes, as (message, socket id to leave out);
        ``keep``'s change, if any, stays pending."""
        changes = self.pending.pop(key, None)
        if not changes:
            return []
        if keep is not None and keep in changes:
            self.pending[key] = {keep: changes.pop(keep)}
        channel = key[1]
        out: list[tuple[str, str | None]] = []
        for user_id, change in changes.items():
            member, before = change.member, change.before
            if change.was_member:
                if member is not None and before is not None and before == member:
                    continue  # back as it was: nothing changed for the others
                out.append((_removed(channel, user_id), change.exclude))
            if member is not None:
                out.append((_added(channel, member), change.exclude))
        return out


def _added(channel: str, member: Member) -> str:
    return messages.member_added(channel, member.user_id, member.user_info)


def _removed(channel: str, user_id: str) -> str:
    return messages.member_removed(channel, user_id)
