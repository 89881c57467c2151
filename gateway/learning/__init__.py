"""Sampled second opinions: a share of `auto` answers, judged against the reference tier's off the request path.

    sampler.py   which requests are sampled (pure), and the daily spending caps (Redis)
    judge.py     the rule judge (JSON, tool schemas, final numbers) and the model judge (judge_pairwise.md)
    store.py     judgements in Postgres (migrations/0009_judgements.sql)
    cache_checks.py  checks of semantic-cache hits and near misses, and the refresher of the learned threshold
    worker.py    the bounded queue and the one task that drains it
    curve.py     the quality/cost curve of a tier pair, APGR, cut-offs for a target quality (pure; smr eval
                 --from-logs and the dashboard)
    report.py    what the dashboard shows of learning (GET /v1/usage?view=learning), from the window's figures
"""
