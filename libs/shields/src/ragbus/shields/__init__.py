"""ragbus shields: detectors shared by the services that screen text.

Pure detectors (normalisation, injection patterns, personal data, ...) and the models behind them,
used by the guard (questions in, answers out) and ingest (instructions hidden in documents). Services
never import each other, so what two of them detect with lives here.
"""
