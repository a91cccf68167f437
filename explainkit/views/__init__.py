"""Views: static renderings, the anywidget views, the dashboard and its state, and the Voila app."""
