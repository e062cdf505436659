"""CDS Hooks 2.0 service reading FHIR R4: lenalidomide-tolerance cards for order-select and order-sign."""
