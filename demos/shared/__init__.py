"""What tabs share: input checks and limits, seeds and PNG parameters, the box and mask editors,
click-to-mask, the Compare declarations, handler wrapping and common widgets. Imports no tab and no page
module."""
