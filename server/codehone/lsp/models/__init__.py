"""The models a running server holds: one loaded model off the event loop (``service``), the
slots that map documents to models (``registry``), and workspace folders' own choices
(``workspace``)."""
