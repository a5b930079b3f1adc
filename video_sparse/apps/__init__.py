"""The top of the package: the configuration schema (``config``), the checks run once at the
command-line boundary (``checks``), the shared launcher (``launch``, ``help``) and one module per
command (``train``, ``eval``, ``scan``) turning a config into calls below."""
