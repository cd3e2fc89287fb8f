"""The listening room: a staff page to hear what each arm recommends (views and routes; logic in services)."""
