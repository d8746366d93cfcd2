"""credit-decision HTTP service: Flask app, pure decision core, adapters at the edges."""
