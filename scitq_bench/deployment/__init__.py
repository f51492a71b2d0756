"""Production deployment files (systemd units, gunicorn, nginx, the settings file,
Prometheus, Grafana) rendered from the templates shipped with the package.

``values`` defines and checks what the templates are filled with; ``render`` finds the
templates and fills them; ``output`` writes a rendered file. Nothing here imports Flask
or SQLAlchemy: the client's CLI loads it.
"""
