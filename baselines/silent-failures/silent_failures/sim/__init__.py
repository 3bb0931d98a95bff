"""Simulated silent-failure baselines: scenarios, monitors, Flower apps, an in-process Grid.

    scenarios.py   who is affected from when, and the data they train on (corpus.py)
    config.py      the baselines' run-config keys, validated
    monitors.py    the compared server monitors by name, and the system-metrics monitor
    ledger.py      RunLedger: ground truth and system metrics around any strategy
    client.py      the ClientApp (LoRA training + flwr-trust's client mod)
    server.py      run_baseline(grid, run_config): one federation on any Grid
    groundtruth.py the evaluator's measurement of the initial and final model
    outcome.py     alarms judged against the ground truth (detection-matrix material)
    summary.py     the run summary as Markdown
    inline.py      InlineGrid: an in-process Grid (no Ray, no SuperLink)
    runner.py      run_inline(...): a federation in this process
    apps.py        make_server_app / make_client_app for baselines/
"""
