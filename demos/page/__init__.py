"""What only the page (`app.py`) uses: the start page and topic navigation, the server hooks (queue,
plain errors), the banner, language switch and Models panel, translations and lessons."""
