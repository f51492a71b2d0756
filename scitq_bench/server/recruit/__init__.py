"""Recruitment on the server: the flavor catalog, providers, recruiters, deploy and
destroy jobs, autoscaling and cost."""
