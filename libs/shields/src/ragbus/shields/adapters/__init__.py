"""Models behind the shields' ports; each module imports its heavy library itself, only when used."""
