// Pages: see the dashboard brief. Registers its routes with route() from app.js.
