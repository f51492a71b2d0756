"""Recruitment logic that needs no server: the protofilter language that picks machine
offers (``protofilter``)."""
