"""The ``local`` commerce backend: orders kept in this app's own tables and fulfilled from the admin."""
