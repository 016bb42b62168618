"""The master's Redis key schema (docs/redis-keys.md), all under one prefix."""

from __future__ import annotations

from dataclasses import dataclass

_GLOB_SPECIAL = "\\*?[]"


def glob_escape(text: str) -> str:
    """`text` with Redis MATCH pattern characters escaped."""
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


@dataclass(frozen=True)
class Keys:
    """Builds every key the master writes, from the configured `[redis] prefix`."""

    prefix: str = "sfs:"

    # -- peers -------------------------------------------------------------
    @property
    def peers(self) -> str:
        """SET of registered peer names."""
        return self.prefix + "peers"

    def peer(self, name: str) -> str:
        """HASH of one peer's record."""
        return self.prefix + "peer:" + name

    # -- users and sessions ----------------------------------------------------
    @property
    def users(self) -> str:
        """SET of usernames."""
        return self.prefix + "users"

    def user(self, username: str) -> str:
        """HASH of one user: password hash, active, created, failed_logins."""
        return self.prefix + "user:" + username

    def user_sessions(self, username: str) -> str:
        """SET of a user's session tokens (to end them on deactivation)."""
        return self.prefix + "user:" + username + ":sessions"

    def session(self, token: str) -> str:
        """STRING (JSON) of one session, with a TTL of `[master] session_ttl`."""
        return self.prefix + "session:" + token

    def dashboard_session(self, token: str) -> str:
        """STRING (JSON) of one dashboard session (who, user, csrf, expires), with a TTL."""
        return self.prefix + "dash:" + token

    # -- inventory ----------------------------------------------------------
    @property
    def inventory_rows(self) -> str:
        """HASH sha1 -> the content's row, rendered as one JSON line (lookup and snapshot)."""
        return self.prefix + "inv:rows"

    @property
    def inventory_copies(self) -> str:
        """HASH number of copies -> how many hashes have that many (the dashboard's counts)."""
        return self.prefix + "inv:copies"

    def store_inventory(self, store: str) -> str:
        """HASH of one store's own inventory: sha1 -> "ext:size"."""
        return self.prefix + "inv:s:" + store

    @property
    def inventory_feed(self) -> str:
        """STREAM of inventory changes."""
        return self.prefix + "inv:feed"

    # -- purchases ------------------------------------------------------------
    def purchase(self, token: str) -> str:
        """STRING (JSON) of one purchase."""
        return self.prefix + "pur:" + token

    @property
    def purchase_expiry(self) -> str:
        """ZSET token -> expires (epoch seconds), for snapshots and pruning."""
        return self.prefix + "pur:expires"

    @property
    def purchase_feed(self) -> str:
        """STREAM of purchase changes."""
        return self.prefix + "pur:feed"

    @property
    def prune_lease(self) -> str:
        """HASH of the purchase pruner's lease (as `repair_lease`, plus `ran`)."""
        return self.prefix + "prune:lease"

    # -- repair (docs/repair.md) ------------------------------------------------
    @property
    def repair_lease(self) -> str:
        """HASH of the planner's lease: owner, token (the fencing token), expires, fence."""
        return self.prefix + "repair:lease"

    @property
    def repair_queue(self) -> str:
        """ZSET sha1 -> counted copies: content waiting for a new copy, fewest first."""
        return self.prefix + "repair:queue"

    @property
    def repair_trim(self) -> str:
        """ZSET sha1 -> counted copies: content over `replicas` copies, to trim."""
        return self.prefix + "repair:trim"

    @property
    def repair_stores(self) -> str:
        """HASH store -> JSON {state: down|lost, since}: stores whose copies may not count."""
        return self.prefix + "repair:stores"

    @property
    def repair_status(self) -> str:
        """HASH of the planner's progress and its last scan (copies by count, totals)."""
        return self.prefix + "repair:status"
