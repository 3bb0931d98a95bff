"""The default-suite generator's logic, one module per failure mode; the texts it draws from are
the JSON files in tools/suite_sources/. Entry point: tools/build_default_suites.py."""
