"""An out-of-tree vendor plugin (a test fixture): a correct copy of the Gloo backend and subtly wrong variants."""
