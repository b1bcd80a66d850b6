"""Every write with a rule in it, as plain functions with keyword arguments, one module per concern.
Views, commands, admin and tasks stay thin and call these."""
