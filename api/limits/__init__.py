"""Per-key admission and accounting: request rate limits, daily audio quotas and usage counters.

One protocol (:class:`~api.limits.base.UsageLimits`), two implementations chosen by settings:
in-process (:class:`~api.limits.memory.MemoryLimits`, one server) and Redis
(:class:`~api.limits.redis_limits.RedisLimits`, shared by every replica; atomic Lua scripts).
"""
